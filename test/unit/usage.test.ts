import { describe, expect, it } from 'vitest';
import { foldToBudget, MAX_USAGE_PATH, statusClass, UsageAggregator, usageFields, type UsageRequest } from '../../src/telemetry/usage.js';
import { takeTokens } from '../../src/telemetry/usage-writer.js';
import { selectTraceEntries, summariseTrace } from '../../src/authority/trace.js';

const req = (over: Partial<UsageRequest> = {}): UsageRequest => ({
  route: 'api',
  method: 'GET',
  path: '/v1/models',
  status: 200,
  lease: 'L1',
  fingerprint: 'sha256:aaaaaaaaaaaa',
  denied: undefined,
  ...over,
});

describe('usage aggregation (docs/audit.md `usage`)', () => {
  it('status classes', () => {
    expect([100, 200, 204, 299, 301, 401, 403, 404, 500, 599].map(statusClass)).toEqual(['1xx', '2xx', '2xx', '2xx', '3xx', '4xx', '4xx', '4xx', '5xx', '5xx']);
    expect([0, 42, 600, 999].map(statusClass)).toEqual(['0xx', '0xx', '0xx', '0xx']);
  });

  it('one summary per (lease, fingerprint, route, method, path, status class, denied), with count and first/last', () => {
    const a = new UsageAggregator();
    a.add(req(), 1_000);
    a.add(req({ status: 204 }), 2_000); // same class
    a.add(req(), 3_000);
    a.add(req({ status: 404 }), 4_000);
    a.add(req({ method: 'POST' }), 5_000);
    a.add(req({ path: '/v1/other' }), 6_000);
    a.add(req({ lease: 'L2', fingerprint: 'sha256:bbbbbbbbbbbb' }), 7_000);
    a.add(req({ route: 'other' }), 8_000);
    a.add(req({ denied: 'leash_denied', status: 403 }), 9_000);
    a.add(req({ status: 403 }), 9_500);
    const out = a.take();
    expect(out).toHaveLength(7); // 200, 204 and 200 are one; 404 and 403 (not denied) are one
    expect(out[0]).toEqual({ route: 'api', method: 'GET', path: '/v1/models', status: '2xx', lease: 'L1', fingerprint: 'sha256:aaaaaaaaaaaa', denied: undefined, count: 3, firstMs: 1_000, lastMs: 3_000 });
    expect(out.reduce((n, s) => n + s.count, 0)).toBe(10);
    expect(out.find((s) => s.denied)).toMatchObject({ status: '4xx', denied: 'leash_denied', count: 1 });
    // take() starts afresh
    expect(a.size).toBe(0);
    expect(a.take()).toEqual([]);
  });

  it('a request that repeats the one before counts in its summary; one differing in any single key part does not', () => {
    const a = new UsageAggregator();
    const variants: Partial<UsageRequest>[] = [
      {},
      { lease: 'L2' },
      { fingerprint: 'sha256:bbbbbbbbbbbb' },
      { route: 'other' },
      { method: 'POST' },
      { path: '/v1/other' },
      { status: 404 },
      { denied: 'leash_denied' },
    ];
    // Each variant twice in a row (the second is a repeat), then the base again between variants.
    let t = 0;
    for (const v of variants) {
      a.add(req(v), ++t);
      a.add(req(v), ++t);
      a.add(req(), ++t);
    }
    const out = a.take();
    expect(out).toHaveLength(variants.length);
    expect(out[0]).toMatchObject({ lease: 'L1', path: '/v1/models', status: '2xx', denied: undefined, count: 2 + variants.length, firstMs: 1 });
    for (const s of out.slice(1)) expect(s.count).toBe(2);
    // A repeat after take() starts a new summary: the taken one is not counted into.
    a.add(req(), 100);
    expect(out[0]!.count).toBe(2 + variants.length);
    expect(a.take()).toEqual([expect.objectContaining({ count: 1, firstMs: 100, lastMs: 100 })]);
    // Statuses of one class repeat; a status outside 100…599 is its own class.
    a.add(req({ status: 200 }), 1);
    a.add(req({ status: 201 }), 2);
    a.add(req({ status: 0 }), 3);
    a.add(req({ status: 700 }), 4);
    expect(a.take().map((s) => [s.status, s.count])).toEqual([
      ['2xx', 2],
      ['0xx', 2],
    ]);
  });

  it('a request without route or credential is summarised under (none), without lease or fingerprint', () => {
    const a = new UsageAggregator();
    a.add(req({ route: undefined, lease: undefined, fingerprint: undefined, path: undefined, status: 404, denied: 'leash_unknown_route' }), 1);
    const [s] = a.take();
    expect(s).toMatchObject({ route: '(none)', path: '', status: '4xx', count: 1 });
    expect(usageFields(s!, 'i-1', undefined, 0)).not.toContain('lease');
  });

  it('bounds distinct keys: beyond maxKeys, requests go to one (other) summary; counts stay exact', () => {
    const a = new UsageAggregator(3);
    for (let i = 0; i < 10; i++) a.add(req({ path: `/p/${i}` }), 100 + i);
    a.add(req({ path: '/p/1' }), 200); // an existing key still counts in place
    const out = a.take();
    expect(out).toHaveLength(4);
    expect(out.slice(0, 3).map((s) => s.path)).toEqual(['/p/0', '/p/1', '/p/2']);
    expect(out[1]!.count).toBe(2);
    expect(out[3]).toMatchObject({ path: '(other)', count: 7, firstMs: 103, lastMs: 109, route: undefined, lease: undefined, method: undefined, status: undefined });
    expect(out.reduce((n, s) => n + s.count, 0)).toBe(11);
  });

  it('long paths are cut to MAX_USAGE_PATH characters, marked', () => {
    const a = new UsageAggregator();
    a.add(req({ path: `/${'x'.repeat(1000)}` }), 1);
    const [s] = a.take();
    expect(s!.path).toHaveLength(MAX_USAGE_PATH);
    expect(s!.path.endsWith('…')).toBe(true);
  });

  it('a budget below the number of summaries folds the excess into (other), counts exact', () => {
    const a = new UsageAggregator(100);
    for (let i = 0; i < 10; i++) a.add(req({ path: `/p/${i}` }), 100 + i);
    const out = a.take(4);
    expect(out).toHaveLength(4);
    expect(out[3]).toMatchObject({ path: '(other)', count: 7, firstMs: 103, lastMs: 109 });
    expect(foldToBudget([], undefined, 0)).toEqual([]);
  });

  it('refused requests (free for an agent) fill at most half of maxKeys: forwarded use sent after a flood of them keeps its own summary', () => {
    const a = new UsageAggregator(10);
    for (let i = 0; i < 50; i++) a.add(req({ path: `/junk/${i}`, status: 403, denied: 'leash_forbidden' }), 100 + i);
    for (let i = 0; i < 3; i++) a.add(req({ method: 'DELETE', path: `/v1/files/f${i}` }), 200 + i);
    const out = a.take();
    expect(out.filter((s) => s.denied !== undefined)).toHaveLength(5);
    expect(out.filter((s) => s.method === 'DELETE').map((s) => s.path)).toEqual(['/v1/files/f0', '/v1/files/f1', '/v1/files/f2']);
    expect(out.find((s) => s.path === '(other)')).toMatchObject({ count: 45 });
    expect(out.reduce((n, s) => n + s.count, 0)).toBe(53);
  });

  it('over the budget, refused summaries fold into (other) before forwarded ones, whatever order they came in', () => {
    const a = new UsageAggregator(100);
    for (let i = 0; i < 6; i++) a.add(req({ path: `/junk/${i}`, status: 403, denied: 'leash_forbidden' }), 100 + i);
    a.add(req({ path: '/v1/exfiltrate' }), 200);
    const out = a.take(3);
    expect(out).toHaveLength(3);
    expect(out[0]).toMatchObject({ path: '/v1/exfiltrate', lease: 'L1', denied: undefined });
    expect(out[2]).toMatchObject({ path: '(other)', count: 5 });
  });

  it('stream fields: event and at first, v "1", every value a string, absent values left out', () => {
    const a = new UsageAggregator();
    a.add(req(), Date.UTC(2026, 0, 1));
    const flat = usageFields(a.take()[0]!, 'sidecar-1', 'api', Date.UTC(2026, 0, 1, 0, 0, 5));
    expect(flat.slice(0, 6)).toEqual(['event', 'usage', 'at', '2026-01-01T00:00:05.000Z', 'v', '1']);
    const obj = Object.fromEntries(flat.flatMap((v, i) => (i % 2 ? [] : [[v, flat[i + 1]]])));
    expect(obj).toEqual({
      event: 'usage', at: '2026-01-01T00:00:05.000Z', v: '1', instance: 'sidecar-1', route: 'api', credential: 'api', lease: 'L1', fingerprint: 'sha256:aaaaaaaaaaaa',
      method: 'GET', path: '/v1/models', status: '2xx', count: '1', first: '2026-01-01T00:00:00.000Z', last: '2026-01-01T00:00:00.000Z',
    });
  });

  it('takeTokens grants what the bucket holds, refilled over time', () => {
    const limit = { burst: 10, perMinute: 60 };
    let t = takeTokens({ tokens: 10, atMs: 0 }, 0, limit, 25);
    expect(t.granted).toBe(10);
    t = takeTokens(t.bucket, 500, limit, 5);
    expect(t.granted).toBe(0);
    t = takeTokens(t.bucket, 3_000, limit, 5);
    expect(t.granted).toBe(3);
  });
});

describe('trace summary (pure)', () => {
  const fp = 'sha256:aaaaaaaaaaaa';
  const entries: Array<Record<string, string>> = [
    { id: '1-0', event: 'lease.issued', at: 't1', identity: 'spiffe://x/join/a', credential: 'api', lease: 'L1', fingerprint: fp },
    { id: '2-0', event: 'credential.acquired', at: 't2', instance: 'sc-1', route: 'api', credential: 'api', lease: 'L1', fingerprint: fp },
    { id: '3-0', event: 'usage', at: 't3', instance: 'sc-1', route: 'api', lease: 'L1', method: 'GET', path: '/v1/x', status: '2xx', count: '3', first: 'a2', last: 'a3' },
    { id: '4-0', event: 'usage', at: 't4', instance: 'sc-1', route: 'api', lease: 'L1', method: 'GET', path: '/v1/x', status: '2xx', count: '2', first: 'a4', last: 'a5' },
    { id: '5-0', event: 'usage', at: 't5', instance: 'sc-2', route: 'api', lease: 'L9', method: 'GET', path: '/v1/x', status: '2xx', count: '9', first: 'a4', last: 'a5' },
    { id: '6-0', event: 'lease.released', at: 't6', identity: 'spiffe://x/join/a', credential: 'api', lease: 'L1', fingerprint: fp },
  ];
  it('selects the entries of its fingerprint and of its lease ids, not others', () => {
    expect(selectTraceEntries(fp, entries).map((e) => e.id)).toEqual(['1-0', '2-0', '3-0', '4-0', '6-0']);
  });
  it('adds usage up over flushes, and gives holders with lifecycle times', () => {
    const { holders, operations } = summariseTrace(fp, [], selectTraceEntries(fp, entries));
    expect(operations).toEqual([{ lease: 'L1', instance: 'sc-1', route: 'api', method: 'GET', path: '/v1/x', status: '2xx', count: 5, first: 'a2', last: 'a5' }]);
    expect(holders).toEqual([{ lease: 'L1', instances: ['spiffe://x/join/a', 'sc-1'], credential: 'api', issued: 't1', acquired: 't2', released: 't6' }]);
  });
});

describe('audit config', async () => {
  const { parseConfig } = await import('../../src/config/load.js');
  const { sidecarSchema } = await import('../../src/config/sidecar.js');
  const { authoritySchema } = await import('../../src/config/authority.js');
  const base = { listen: '127.0.0.1:0', routes: { api: { upstream: 'http://127.0.0.1:1', credential: { env: 'K' }, inject: { header: 'x-k' }, allow: ['GET /**'] } } };
  it('sidecar: defaults, the old revocations.auditStream key still parses, bounds checked', () => {
    const c = parseConfig(sidecarSchema, JSON.stringify({ ...base, revocations: { redis: 'redis://127.0.0.1:6379', auditStream: { burst: 7, perMinute: 3 } } }), {});
    expect(c.audit).toMatchObject({ flushInterval: 5_000, maxKeys: 1_000, maxLen: 100_000, maxAge: 7 * 86_400_000, usageBudget: { burst: 1_000, perMinute: 600 } });
    expect(c.audit.redis).toBeUndefined();
    expect(c.audit.stream).toBeUndefined();
    expect(c.revocations?.auditStream).toEqual({ burst: 7, perMinute: 3 });
    const d = parseConfig(sidecarSchema, JSON.stringify({ ...base, audit: { redis: 'redis://127.0.0.1:6380', flushInterval: '1s', maxAge: '2d', stream: { burst: 5 } } }), {});
    expect(d.audit).toMatchObject({ redis: 'redis://127.0.0.1:6380', flushInterval: 1_000, maxAge: 2 * 86_400_000, stream: { burst: 5, perMinute: 30 } });
    expect(() => parseConfig(sidecarSchema, JSON.stringify({ ...base, audit: { maxAge: '10s' } }), {})).toThrow(/audit\.maxAge/);
    expect(() => parseConfig(sidecarSchema, JSON.stringify({ ...base, audit: { flushEvery: '1s' } }), {})).toThrow();
  });
  it('authority: audit.maxLen / maxAge / anomalyScan', () => {
    const a = parseConfig(authoritySchema, JSON.stringify({ listen: '127.0.0.1:0', credentials: {}, audit: { maxLen: 5000, maxAge: '1d' } }), {});
    expect(a.audit).toEqual({ maxLen: 5000, maxAge: 86_400_000, anomalyScan: 30_000 });
    expect(parseConfig(authoritySchema, JSON.stringify({ listen: '127.0.0.1:0', credentials: {}, audit: { anomalyScan: '5s' } }), {}).audit.anomalyScan).toBe(5_000);
    expect(() => parseConfig(authoritySchema, JSON.stringify({ listen: '127.0.0.1:0', credentials: {}, audit: { anomalyScan: '100ms' } }), {})).toThrow();
  });
});
