import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { api, bootstrap } from '../helpers/replicas.js';

/**
 * `leash trace` reads the whole audit stream its retention keeps, not a window of the
 * newest entries: it used to read the newest 20,000, and one agent's refused requests
 * (unique paths, never forwarded, so free) pushed a value's history out of that window in
 * about half an hour, after which trace said nobody had held it (exit 1).
 */
let redis: TestRedis | undefined;
let authority: TestAuthority | undefined;
let client: Redis | undefined;
afterEach(async () => {
  client?.disconnect();
  await authority?.stop();
  await redis?.stop();
  client = undefined;
  authority = undefined;
  redis = undefined;
});

interface Trace {
  events: Array<{ event: string }>;
  operations: Array<{ path: string; count: number }>;
}

describe('leash trace past the newest 20,000 audit entries', () => {
  it('finds a lease issued before 30,000 later entries, and its use', async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    authority = await startAuthority({
      redis: redis.url,
      credentials: { api: { kind: 'jwt', audience: 'api', ttl: '10m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['api'] }],
    });
    const boot = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const lease = await api<{ lease: string; fingerprint: string }>(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: boot.client, body: { credential: 'api' } });
    expect(lease.status).toBe(200);
    const { lease: leaseId, fingerprint } = lease.body;
    await new Promise((r) => setTimeout(r, 100)); // the authority's XADD of lease.issued follows its answer
    const usage = (path: string, l: string, count: string) => ['event', 'usage', 'v', '1', 'instance', 'i-1', 'route', 'api', 'lease', l, 'method', 'GET', 'path', path, 'status', '2xx', 'count', count];
    const p = client.pipeline();
    p.xadd('leash:audit', '*', ...usage('/v1/exfiltrate', leaseId, '5'));
    for (let i = 0; i < 30_000; i++) p.xadd('leash:audit', '*', ...usage(`/junk/${i}`, 'other-lease', '1'));
    await p.exec();
    const trace = await api<Trace>(authority.url, authority.caPem, 'GET', `/v1/admin/trace?fingerprint=${encodeURIComponent(fingerprint)}`, { admin: true });
    expect(trace.status).toBe(200);
    expect(trace.body.events.map((e) => e.event)).toContain('lease.issued');
    expect(trace.body.operations).toEqual([expect.objectContaining({ path: '/v1/exfiltrate', count: 5 })]);
  }, 30_000);
});
