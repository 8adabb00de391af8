import { request } from 'node:https';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sample } from '../helpers/promtool.js';
import { waitFor } from '../helpers/wait.js';
import { usageFields, type UsageSummary } from '../../src/telemetry/usage.js';
import { ClonedLeaseWatcher } from '../../src/authority/cloned-leases.js';

/**
 * `anomaly.cloned_credential` found by the authority itself (docs/anomalies.md), not only
 * when someone runs `leash scopes`: a real redis-server, an authority reading the shared
 * audit stream every second, and `usage` summaries in the exact form a sidecar writes
 * (usageFields): one lease id in use on two instances is an audit event (log and stream)
 * and `leash_authority_anomalies_total{credential,kind="cloned_credential"}`, counted from
 * a pre-created 0. (Every secret here is a fake test value.)
 */
const SECRET = 'sk-cloned-lease-static-value-0123456789';
let redis: TestRedis | undefined;
let authority: TestAuthority | undefined;
let client: Redis | undefined;

afterEach(async () => {
  client?.disconnect();
  await authority?.stop();
  await redis?.stop();
  client = authority = redis = undefined;
});

function scrape(a: TestAuthority): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${a.url}/metrics`, { ca: a.caPem }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

const usage = (lease: string | undefined, fingerprint: string | undefined, count = 3): UsageSummary => ({
  route: 'api',
  method: 'GET',
  path: '/v1/models',
  status: '2xx',
  lease,
  fingerprint,
  denied: undefined,
  count,
  firstMs: Date.now() - 1000,
  lastMs: Date.now(),
});

const CLONED = 'leash_authority_anomalies_total{credential="api",kind="cloned_credential"}';
const UNKNOWN = 'leash_authority_anomalies_total{credential="_unknown",kind="cloned_credential"}';

describe('anomaly.cloned_credential, continuously', () => {
  it('one lease in use on two instances: an audit event in the log and the stream, and the counter from 0; one instance over many flushes is not', { timeout: 20_000 }, async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    authority = await startAuthority(
      {
        redis: redis.url,
        audit: { anomalyScan: '1s' },
        credentials: { api: { kind: 'static', source: { env: 'API' }, ttl: '10m' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['api'] }],
      },
      { env: { API: SECRET } },
    );
    const a = authority.running.authority;
    const held = await a.lease('spiffe://leash.local/join/agent-1', { credential: 'api' });
    const other = await a.lease('spiffe://leash.local/join/agent-2', { credential: 'api' });
    expect(sample(await scrape(authority), CLONED)).toBe(0);
    expect(sample(await scrape(authority), UNKNOWN)).toBe(0);

    const add = (flat: string[]) => client!.xadd('leash:audit', '*', ...flat);
    // The holder, flush after flush; another instance with its own lease of the same value (a static issuer): no clone.
    for (let i = 0; i < 3; i++) await add(usageFields(usage(held.lease, held.fingerprint), 'sc-a', 'lease:api', Date.now()));
    await add(usageFields(usage(other.lease, other.fingerprint), 'sc-b', 'lease:api', Date.now()));
    // A forged label for a lease the authority never issued: counted as _unknown, the label not echoed.
    await add(usageFields(usage('ZZZZZZZZZZZZZZZZZZZZZZ', undefined), 'sc-x', 'lease:made-up-name', Date.now()));
    await add(usageFields(usage('ZZZZZZZZZZZZZZZZZZZZZZ', undefined), 'sc-y', 'lease:made-up-name', Date.now()));
    // Then the holder's lease from a second instance: copied out.
    await add(usageFields(usage(held.lease, held.fingerprint), 'sc-c', 'lease:api', Date.now()));

    const events = await waitFor(
      async () => {
        const e = authority!.logs.events('anomaly.cloned_credential');
        return e.length >= 2 ? e : undefined;
      },
      { timeoutMs: 8_000, intervalMs: 100 },
    );
    // Reported once each, however many scans and flushes follow.
    await add(usageFields(usage(held.lease, held.fingerprint), 'sc-c', 'lease:api', Date.now()));
    await new Promise((r) => setTimeout(r, 2_500));
    const all = authority.logs.events('anomaly.cloned_credential');
    expect(all).toHaveLength(2);
    const clone = all.find((e) => e.lease === held.lease)!;
    expect(clone).toMatchObject({ audit: true, v: 1, credential: 'api', fingerprint: held.fingerprint, instances: 'sc-a,sc-c' });
    const forged = all.find((e) => e.lease === 'ZZZZZZZZZZZZZZZZZZZZZZ')!;
    expect(forged.credential).toBeUndefined();
    expect(forged.instances).toBe('sc-x,sc-y');
    expect(events.some((e) => e.lease === other.lease)).toBe(false);

    const page = await scrape(authority);
    expect(sample(page, CLONED)).toBe(1);
    expect(sample(page, UNKNOWN)).toBe(1);
    expect(page).not.toContain('made-up-name');
    // In the stream too, for leash trace and whoever reads it.
    const stream = (await client.xrange('leash:audit', '-', '+')) as Array<[string, string[]]>;
    const written = stream.map(([, f]) => f).filter((f) => f[1] === 'anomaly.cloned_credential');
    expect(written).toHaveLength(2);
    expect(written.find((f) => f.includes(held.lease))).toEqual(expect.arrayContaining(['v', '1', 'instances', 'sc-a,sc-c', 'credential', 'api']));
    expect(JSON.stringify([stream, authority.logs.lines])).not.toContain(SECRET);
  });
});

describe('ClonedLeaseWatcher (bounded)', () => {
  const entry = (lease: string, instance: string, extra: Record<string, string> = {}) => ({ event: 'usage', v: '1', lease, instance, count: '1', ...extra });
  it('reports a lease once, on its second instance; ignores other events, entries without a lease and newer schema versions', () => {
    const w = new ClonedLeaseWatcher();
    expect(w.observe([entry('L1', 'a'), entry('L1', 'a'), { event: 'credential.acquired', lease: 'L1', instance: 'b' }, entry('L1', 'b', { v: '2' }), { event: 'usage', instance: 'b', count: '1' }])).toEqual([]);
    expect(w.observe([entry('L1', 'b', { fingerprint: 'sha256:0123456789ab', credential: 'lease:api' })])).toEqual([
      { lease: 'L1', instances: ['a', 'b'], fingerprint: 'sha256:0123456789ab', credentialLabel: 'lease:api' },
    ]);
    expect(w.observe([entry('L1', 'c')])).toEqual([]);
  });
  it('remembers at most maxLeases lease ids, forgetting the one seen longest ago', () => {
    const w = new ClonedLeaseWatcher(2);
    w.observe([entry('L1', 'a'), entry('L2', 'a'), entry('L1', 'a'), entry('L3', 'a')]);
    // L2 was forgotten (L1 was seen again after it): its second instance starts afresh.
    expect(w.observe([entry('L2', 'b')])).toEqual([]);
    expect(w.observe([entry('L1', 'b')])).toEqual([]); // L1 was pushed out by L2's return
    expect(w.observe([entry('L2', 'c')]).map((c) => c.lease)).toEqual(['L2']);
  });
});
