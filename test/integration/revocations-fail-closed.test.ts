import { describe, expect, it } from 'vitest';
import { startAuthority } from '../helpers/authority.js';
import { startBusProxy } from '../helpers/bus-proxy.js';
import { startUpstream } from '../helpers/harness.js';
import { leasedRoute, leasedSidecar } from '../helpers/leased-sidecar.js';
import { startRedis } from '../helpers/redis.js';
import { stopAfterEach } from '../helpers/teardown.js';
import { writeTemp } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * `revocations.failClosedAfter`: while the revocation channel is down the sidecar cannot
 * know what was revoked. By default it serves until its leases expire; with the setting,
 * once the channel has been down that long, leased routes refuse (503
 * leash_credential_unavailable) until it is back and caught up from the stream. Static
 * routes, which no revocation reaches, keep serving. Real Redis behind a TCP proxy that
 * partitions the sidecar from it.
 */
const started = stopAfterEach();
// Made up for this test (no vendor issues keys of this shape): the static route's credential.
const PLAIN_KEY = 'sk-plain-static-0123456789';

async function setup(revocations: Record<string, unknown>) {
  const redis = started(await startRedis(), (r) => r.stop());
  const proxy = started(await startBusProxy(Number(new URL(redis.url).port)), (p) => p.close());
  const authority = started(
    await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    }),
    (a) => a.stop(),
  );
  const upstream = started(await startUpstream((_req, res) => res.end('ok')), (u) => u.close());
  const { sidecar, logs } = await leasedSidecar(
    authority,
    { search: leasedRoute(upstream.url, 'search'), plain: { ...leasedRoute(upstream.url, 'search'), credential: { file: writeTemp('plain.key', PLAIN_KEY) } } },
    { revocations: { redis: proxy.url, ...revocations } },
  );
  started(sidecar, (s) => s.stop());
  const addrs = await sidecar.start();
  const get = async (route: string) => {
    const res = await fetch(`http://127.0.0.1:${addrs.proxy.port}/${route}/x`);
    return { status: res.status, body: await res.text() };
  };
  await waitFor(async () => (await get('search')).status === 200, { message: 'the first lease' });
  return { proxy, get, logs };
}

describe('revocations.failClosedAfter', () => {
  it('refuses leased routes once the channel has been down that long, and forwards again once it is back', async () => {
    const { proxy, get, logs } = await setup({ failClosedAfter: '300ms' });
    proxy.partition();
    proxy.cutAll(); // the sidecar's connections drop; reconnections are held by the partition
    await waitFor(async () => (await get('search')).status === 503, { message: 'leased route refused' });
    const refused = await get('search');
    expect(refused.body).toContain('leash_credential_unavailable');
    expect(refused.body).toContain('revocations.failClosedAfter');
    expect(refused.body + logs.lines.join('\n')).not.toContain(PLAIN_KEY);
    expect((await get('plain')).status).toBe(200); // a static credential: no revocation reaches it
    expect(logs.lines.join('\n')).toContain('revocation channel down longer than revocations.failClosedAfter');
    proxy.heal();
    await waitFor(async () => (await get('search')).status === 200, { timeoutMs: 10_000, message: 'forwarding again once the channel is back' });
    expect(logs.lines.join('\n')).toContain('leased routes forward again');
  });

  it('without it, the leases held are used while the channel is down (until they expire)', async () => {
    const { proxy, get } = await setup({});
    proxy.partition();
    proxy.cutAll();
    await new Promise((r) => setTimeout(r, 800));
    expect((await get('search')).status).toBe(200);
    proxy.heal();
  });
});
