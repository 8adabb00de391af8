import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sleep, waitFor } from '../helpers/wait.js';

/** Sidecars apply revocations from the Redis bus (DESIGN §7), each scope, within a second. */
let redis: TestRedis;
let authority: TestAuthority;
let upstream: Upstream;
let client: Redis;
const sidecars: RunningSidecar[] = [];
/** Every token the upstream saw, with when it saw it (ms). */
const seen: Array<{ jti: string; sub: string; at: number }> = [];

afterEach(async () => {
  for (const s of sidecars.splice(0)) await s.stop();
  await upstream?.close();
  await authority?.stop();
  client?.disconnect();
  await redis?.stop();
  seen.length = 0;
});

async function setup(n: number) {
  redis = await startRedis();
  client = new Redis(redis.url);
  authority = await startAuthority({
    credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
    policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
  });
  upstream = await startUpstream((req, res) => {
    const claims = decodeJwt(String(req.headers.authorization).slice(7));
    seen.push({ jti: String(claims.jti), sub: String(claims.sub), at: Date.now() });
    res.end('ok');
  });
  for (let i = 1; i <= n; i++) {
    const token = await authority.token(`agent-${i}`);
    sidecars.push(
      await startSidecar(
        {
          authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
          revocations: { redis: redis.url },
          routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
        },
        { authorityCa: authority.caPem, joinToken: () => token },
      ),
    );
  }
  return new RedisRevocationPublisher(client, 3_600_000);
}

const leaseOf = async (s: RunningSidecar) =>
  ((await (await fetch(`${s.adminUrl}/status`)).json()) as { routes: { search: { lease: string | null } } }).routes.search.lease;

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 1_000): Promise<T> {
  let v!: T;
  await waitFor(async () => ok((v = await fn())), { timeoutMs: ms, intervalMs: 10, message: () => `condition (last: ${JSON.stringify(v)})` });
  return v;
}

describe('sidecars apply revocations', () => {
  it('lease: only the holder drops it and re-leases within a second; the revoked token is never sent again', async () => {
    const bus = await setup(3);
    const before = await Promise.all(sidecars.map(leaseOf));
    for (const s of sidecars) expect((await fetch(`${s.url}/search/x`)).status).toBe(200);
    const t0 = Date.now();
    await bus.publish({ scope: 'lease', target: before[0]!, reason: 'leaked in a log', by: 'test' });
    const after = await until(() => leaseOf(sidecars[0]!), (l) => l !== null && l !== before[0]);
    const appliedAt = Date.now();
    expect(appliedAt - t0).toBeLessThan(1_000);
    expect(after).not.toBe(before[0]);
    expect(await leaseOf(sidecars[1]!)).toBe(before[1]);
    expect(await leaseOf(sidecars[2]!)).toBe(before[2]);
    for (let i = 0; i < 20; i++) expect((await fetch(`${sidecars[0]!.url}/search/x`)).status).toBe(200);
    expect(seen.filter((s) => s.jti === before[0] && s.at >= appliedAt)).toEqual([]);
    const metrics = await (await fetch(`${sidecars[0]!.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_revocations_applied_total\{scope="lease"\} 1/);
    expect(metrics).toMatch(/^leash_revocation_channel_up 1$/m);
    expect(sidecars[0]!.logs.events('credential.revoked')).toHaveLength(1);
  });

  it('credential: every sidecar re-leases; instance: only that one is cut off, the others keep serving', async () => {
    const bus = await setup(3);
    const before = await Promise.all(sidecars.map(leaseOf));
    await bus.publish({ scope: 'credential', target: 'search', reason: 'source rotated', by: 'test' });
    const after = await Promise.all(sidecars.map((s, i) => until(() => leaseOf(s), (l) => l !== null && l !== before[i])));
    expect(new Set(after).size).toBe(3);

    const victim = sidecars[1]!;
    const identity = victim.sidecar.identity!.identity!;
    await bus.publish({ scope: 'instance', target: identity, reason: 'compromised pod', by: 'test' });
    await until(
      () => fetch(`${victim.url}/search/x`).then((r) => r.status),
      (s) => s === 503,
    );
    expect(victim.sidecar.identity?.identity).toBeUndefined();
    expect((await fetch(`${victim.adminUrl}/readyz`)).status).toBe(503);
    for (const s of [sidecars[0]!, sidecars[2]!]) expect((await fetch(`${s.url}/search/x`)).status).toBe(200);
    const lastVictimUse = Date.now();
    await sleep(200);
    expect(seen.filter((s) => s.sub === identity && s.at > lastVictimUse)).toEqual([]);
  });

  it('skips malformed messages on the channel and in the stream without harm', async () => {
    const bus = await setup(1);
    await client.publish('leash:revocations', 'not json');
    await client.publish('leash:revocations', JSON.stringify({ id: '1-1', scope: 'Everything', target: 'x', at: new Date().toISOString() }));
    await client.xadd('leash:revocations', '*', 'scope', 'lease');
    const before = await leaseOf(sidecars[0]!);
    await bus.publish({ scope: 'lease', target: before!, reason: '', by: 'test' });
    await until(() => leaseOf(sidecars[0]!), (l) => l !== null && l !== before);
    expect(sidecars[0]!.logs.lines.filter((l) => l.includes('malformed revocation skipped')).length).toBeGreaterThanOrEqual(2);
    expect((await fetch(`${sidecars[0]!.url}/search/x`)).status).toBe(200);
  });
});
