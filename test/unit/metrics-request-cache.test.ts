import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { NO_ROUTE, PRECREATED_REQUEST_CODES, REQUEST_METHODS, SidecarMetrics } from '../../src/telemetry/metrics.js';
import { seededRandom } from '../helpers/random.js';

/**
 * requestFinished counts in its own numeric-keyed map and hands the counts to prom-client
 * at scrape time. The /metrics text must be exactly what counting directly (one `inc` and
 * one `observe` per request, as before) gives, whatever the interleaving of requests and
 * scrapes.
 */
const ROUTES = ['openai', 'github'];
const FOLD = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

function reference() {
  const registry = new Registry();
  const requests = new Counter({
    name: 'leash_requests_total',
    help: 'Requests answered by the sidecar, by route, method and HTTP status code.',
    labelNames: ['route', 'method', 'code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'leash_request_duration_seconds',
    help: 'Time from request received to response finished (streams included).',
    labelNames: ['route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  for (const route of ROUTES) {
    for (const method of REQUEST_METHODS) for (const code of PRECREATED_REQUEST_CODES) requests.inc({ route, method, code }, 0);
    duration.zero({ route });
  }
  return {
    finished(route: string, method: string, code: number, seconds: number) {
      requests.inc({ route, method: FOLD.has(method) ? method : 'OTHER', code });
      duration.observe({ route }, seconds);
    },
    text: async () => `${await registry.getSingleMetricAsString('leash_requests_total')}\n${await registry.getSingleMetricAsString('leash_request_duration_seconds')}`,
  };
}

const text = async (m: SidecarMetrics) =>
  `${await m.registry.getSingleMetricAsString('leash_requests_total')}\n${await m.registry.getSingleMetricAsString('leash_request_duration_seconds')}`;

/** A deterministic spread of requests: known and unknown methods, upstream codes, leash's own, no route. */
function* requests(seed: number, count: number): Generator<[string, string, number, number]> {
  const methods = ['GET', 'POST', 'DELETE', 'PROPFIND', 'get', 'HEAD', 'OPTIONS', 'PATCH', 'PUT', 'BREW'];
  const codes = [200, 201, 204, 400, 401, 404, 429, 499, 500, 502, 503, 504, 999, 101];
  const routes = [...ROUTES, NO_ROUTE];
  const next = seededRandom(seed);
  for (let i = 0; i < count; i++) {
    const x = next();
    yield [routes[x % routes.length]!, methods[(x >> 4) % methods.length]!, codes[(x >> 8) % codes.length]!, ((x >> 12) % 200_000) / 1000];
  }
}

describe('SidecarMetrics request counting', () => {
  it('gives the same /metrics text as counting each request directly, scrapes interleaved', async () => {
    const m = new SidecarMetrics(() => [], () => undefined, { routes: ROUTES, version: 't' });
    const ref = reference();
    expect(await text(m)).toBe(await ref.text());
    let scrapes = 0;
    for (const [round, count] of [[1, 1], [2, 500], [3, 0], [4, 3000], [5, 7]] as const) {
      for (const [route, method, code, s] of requests(round, count)) {
        m.requestFinished(route, method, code, s);
        ref.finished(route, method, code, s);
      }
      const got = await text(m);
      expect(got).toBe(await ref.text());
      // A second scrape with nothing new changes nothing (the pending counts were handed over once).
      expect(await text(m)).toBe(got);
      scrapes++;
    }
    expect(scrapes).toBe(5);
    // Whole-registry reads (the admin endpoint's path) see the counts too.
    m.requestFinished('openai', 'GET', 200, 0.01);
    ref.finished('openai', 'GET', 200, 0.01);
    const all = await m.registry.metrics();
    const line = (await ref.text()).split('\n').find((l) => l.startsWith('leash_requests_total{route="openai",method="GET",code="200"}'))!;
    expect(all).toContain(line);
  });

  it('is bounded: unknown methods fold into OTHER, one pending entry per series', async () => {
    const m = new SidecarMetrics(() => [], () => undefined, { routes: ROUTES, version: 't' });
    for (let i = 0; i < 5000; i++) m.requestFinished('openai', `X${i}`, 200, 0.001);
    for (let i = 0; i < 5000; i++) m.requestFinished('openai', 'GET', 100 + (i % 900), 0.001);
    const pending = (m as unknown as { pendingRequests: Map<string, Map<number, unknown>> }).pendingRequests;
    expect([...pending.keys()]).toEqual(['openai']);
    expect(pending.get('openai')!.size).toBe(1 + 900);
    const t = await m.registry.getSingleMetricAsString('leash_requests_total');
    expect(t).toContain('leash_requests_total{route="openai",method="OTHER",code="200"} 5000');
    expect(t).not.toContain('method="X');
  });
});
