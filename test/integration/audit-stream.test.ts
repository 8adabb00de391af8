import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sleep } from '../helpers/wait.js';

/** With Redis configured, the authority's audit events are also appended to the stream leash:audit (DESIGN §8). */
const SECRET = 'sk-audit-stream-static-value-123456';
let redis: TestRedis;
let authority: TestAuthority;
let upstream: Upstream;
let leash: RunningSidecar;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
  await redis?.stop();
});

describe('audit stream', () => {
  it('appends bootstrap, issue and policy events to leash:audit, by fingerprint, never the value', async () => {
    redis = await startRedis();
    authority = await startAuthority(
      {
        redis: redis.url,
        credentials: { api: { kind: 'static', source: { env: 'API' }, ttl: '5m' }, other: { kind: 'static', source: { env: 'API' }, ttl: '5m' } },
        policies: [{ identities: ['join:a-*'], credentials: ['api'] }],
      },
      { env: { API: SECRET } },
    );
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const token = await authority.token('a-1');
    leash = await startSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        routes: {
          api: { upstream: upstream.url, credential: 'api', inject: { header: 'x-api-key' }, allow: ['GET /**'] },
          other: { upstream: upstream.url, credential: 'other', inject: { header: 'x-api-key' }, allow: ['GET /**'] },
        },
      },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
    expect((await fetch(`${leash.url}/api/x`)).status).toBe(200);
    const client = new Redis(redis.url);
    try {
      let entries: [string, string[]][] = [];
      const deadline = Date.now() + 3_000;
      while (Date.now() < deadline) {
        entries = (await client.xrange('leash:audit', '-', '+')) as [string, string[]][];
        if (entries.some(([, f]) => f[1] === 'policy.denied') && entries.some(([, f]) => f[1] === 'lease.issued')) break;
        await sleep(50);
      }
      const events = entries.map(([, f]) => Object.fromEntries(f.reduce<[string, string][]>((acc, v, i) => (i % 2 ? acc : [...acc, [v, f[i + 1]!]]), [])));
      expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['instance.bootstrapped', 'lease.issued', 'policy.denied']));
      const issued = events.find((e) => e.event === 'lease.issued')!;
      expect(issued.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
      expect(issued.identity).toBe('spiffe://leash.local/join/a-1');
      expect(JSON.stringify(entries)).not.toContain(SECRET);
      // leash trace's view: the lease holding this value and the events naming it.
      const traced = await authority.running.authority.trace(String(issued.fingerprint));
      expect(traced.auditStream).toBe(true);
      expect(traced.leases.map((l) => l.instance)).toEqual(['spiffe://leash.local/join/a-1']);
      expect(traced.events.map((e) => e.event)).toContain('lease.issued');
      await expect(authority.running.authority.trace('not-a-fingerprint')).rejects.toMatchObject({ status: 400 });
    } finally {
      client.disconnect();
    }
  });
});
