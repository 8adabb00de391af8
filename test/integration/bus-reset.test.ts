import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { epochKeyOf } from '../../src/core/protocol.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { plainClient, publisherFor, recorder, rev, waitFor, type Recorder } from '../helpers/bus-harness.js';
import { startBusProxy, type BusProxy } from '../helpers/bus-proxy.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { sleep } from '../helpers/wait.js';

/**
 * Issue 7: Redis restarted EMPTY (no persistence) while a subscriber at position 0-0 (no
 * revocation published when it started) was cut off, and a revocation published in
 * between. The stream alone cannot tell "reset" from "nothing yet" at 0-0; the stream's
 * epoch does: the subscriber reports a gap ('reset') and its owner reconciles.
 * Each test has its own Redis (the stream and epoch are history).
 */
const KEY = 'leash:revocations';
let redis: BusRedis;
let proxy: BusProxy;
const recs: Recorder[] = [];
const sidecars: RunningSidecar[] = [];
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;

beforeAll(async () => {
  redis = await startBusRedis(); // --save '' --appendonly no: a restart loses everything
  proxy = await startBusProxy(redis.port);
});
afterAll(async () => {
  await proxy.close();
  await redis.stop();
});
afterEach(async () => {
  for (const r of recs.splice(0)) await r.sub.close();
  for (const s of sidecars.splice(0)) await s.stop();
  await upstream?.close();
  await authority?.stop();
  upstream = authority = undefined;
  const c = plainClient(redis.url);
  await c.flushall().catch(() => undefined);
  c.disconnect();
});

/** Cut the proxied subscriber off, publish `during` directly, restart Redis empty, reconnect. */
async function cutOffPublishRestart(during: () => Promise<unknown>): Promise<void> {
  proxy.partition();
  await during();
  await redis.restart();
  proxy.cutAll();
  proxy.heal();
}

describe('revocation bus: Redis restarted empty', () => {
  it('a subscriber at 0-0 reports the reset (gap) before it is up again, and reads the new stream', async () => {
    const rec = recorder(proxy.url);
    recs.push(rec);
    await rec.sub.start(); // nothing published yet: position 0-0
    const admin = plainClient(redis.url);
    expect(await admin.exists(KEY)).toBe(0);
    expect(await admin.get(epochKeyOf(KEY))).toMatch(/^\d+-[0-9a-f]{16}$/); // the subscriber wrote it
    const { publisher, client } = publisherFor(redis.url);
    let lost = '';
    await cutOffPublishRestart(async () => (lost = (await publisher.publish(rev(1))).id));
    await waitFor(() => rec.gaps === 1 && rec.up, 8_000, 'gap, then channel up');
    expect(rec.log.slice(rec.log.lastIndexOf('channel:false'))).toEqual(['channel:false', 'gap:start', 'gap:end', 'channel:true']);
    expect(rec.ids.has(lost)).toBe(false); // lost with the data: only the reconcile covers it
    // The new stream is read from its beginning, including what was published before we reconnected.
    const after = (await publisher.publish(rev(2))).id;
    await waitFor(() => rec.ids.has(after), 2_000, 'a revocation after the reset');
    client.disconnect();
    admin.disconnect();
  });

  it('a subscriber up through an empty restart (nothing published) reports one reset', async () => {
    const rec = recorder(redis.url);
    recs.push(rec);
    await rec.sub.start();
    const admin = plainClient(redis.url);
    const epoch = await admin.get(epochKeyOf(KEY));
    await redis.restart();
    await waitFor(() => rec.gaps === 1 && rec.up, 8_000, 'reset reported');
    const second = await admin.get(epochKeyOf(KEY));
    expect(second).not.toBe(epoch);
    admin.disconnect();
  });

  it('a restart that keeps the epoch (as persistence would) is not a reset', async () => {
    const rec = recorder(proxy.url);
    recs.push(rec);
    await rec.sub.start();
    const admin = plainClient(redis.url);
    const epoch = await admin.get(epochKeyOf(KEY));
    proxy.partition(); // the subscriber must not come back before the epoch is restored
    await redis.restart();
    await admin.set(epochKeyOf(KEY), epoch!);
    proxy.cutAll();
    proxy.heal();
    await waitFor(() => rec.up && rec.log.filter((l) => l === 'channel:true').length >= 2, 8_000, 'up again');
    expect(rec.gaps).toBe(0);
    admin.disconnect();
  });

  it('a subscriber that may not write the epoch still detects the reset (the epoch it saw is gone)', async () => {
    const { publisher, client } = publisherFor(redis.url);
    await publisher.checkEpoch(); // the authority writes it at start
    const rec = recorder(proxy.url, { writeEpoch: false });
    recs.push(rec);
    await rec.sub.start();
    await cutOffPublishRestart(() => publisher.publish(rev(3)));
    await waitFor(() => rec.gaps === 1 && rec.up, 8_000, 'reset reported');
    const admin = plainClient(redis.url);
    expect(await admin.get(epochKeyOf(KEY))).toBeNull(); // it did not write one
    // The publisher notices the reset too, and writes the new epoch.
    expect(await publisher.checkEpoch()).toBe(true);
    expect(await admin.get(epochKeyOf(KEY))).not.toBeNull();
    client.disconnect();
    admin.disconnect();
  });
});

describe('a real sidecar whose lease was revoked while it was cut off from a Redis that restarts empty', () => {
  it('reconciles: the revoked lease is never injected again, the channel is up', async () => {
    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    const seen: Array<{ jti: string; at: number }> = [];
    upstream = await startUpstream((req, res) => {
      seen.push({ jti: String(decodeJwt(String(req.headers.authorization).slice(7)).jti), at: Date.now() });
      res.end('ok');
    });
    const token = await authority.token('agent-1');
    const s = await startSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        revocations: { redis: proxy.url },
        routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
    sidecars.push(s);
    const leaseOf = async () => ((await (await fetch(`${s.adminUrl}/status`)).json()) as { routes: { search: { lease: string | null } } }).routes.search.lease;
    const metrics = () => fetch(`${s.adminUrl}/metrics`).then((r) => r.text());
    const revoked = (await leaseOf())!;
    expect(revoked).toBeTruthy();
    expect((await fetch(`${s.url}/search/x`)).status).toBe(200);
    expect(seen.at(-1)!.jti).toBe(revoked);

    const { publisher, client } = publisherFor(redis.url);
    await cutOffPublishRestart(() => publisher.publish({ scope: 'lease', target: revoked, reason: 'leaked', by: 'test' }));
    const deadline = Date.now() + 10_000;
    let lease = await leaseOf();
    while ((lease === revoked || lease === null || !/^leash_revocation_channel_up 1$/m.test(await metrics())) && Date.now() < deadline) {
      await sleep(50);
      lease = await leaseOf();
    }
    expect(lease).not.toBe(revoked);
    expect(lease).not.toBeNull();
    expect(await metrics()).toMatch(/^leash_revocation_channel_up 1$/m);
    const from = Date.now();
    for (let i = 0; i < 10; i++) expect((await fetch(`${s.url}/search/x`)).status).toBe(200);
    expect(seen.filter((x) => x.at >= from).map((x) => x.jti)).not.toContain(revoked);
    expect(s.logs.lines.some((l) => l.includes('revocation stream was reset'))).toBe(true);
    client.disconnect();
  });
});
