import { PerformanceObserver } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { authoritySchema } from '../../src/config/authority.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { ConfigError } from '../../src/core/errors.js';
import { DROPPED_DEFAULT_METRICS, registerDefaultMetrics } from '../../src/telemetry/default-metrics.js';
import { promCollector } from '../../src/telemetry/prom-collectors.js';
import { promCollector as bundledCollector } from '../../src/telemetry/prom-collectors.bundled.js';
import { AuthorityMetrics } from '../../src/telemetry/authority-metrics.js';
import { SidecarMetrics } from '../../src/telemetry/metrics.js';
import { sample } from '../helpers/promtool.js';

const GC = 'nodejs_gc_duration_seconds';

/** Each metric's name, HELP and TYPE lines, in order: what a scraper or dashboard sees of the set. */
async function heads(r: Registry): Promise<string[]> {
  return (await r.metrics()).split('\n').filter((l) => l.startsWith('# '));
}

/**
 * Records the entry types of every PerformanceObserver.observe call made while `fn` runs.
 * Instruments Node's class, not leash: the question is whether a `gc` observer (the
 * metric's cost) is installed at all.
 */
const observed: string[][] = [];
const realObserve = PerformanceObserver.prototype.observe;
function recordObserve(): void {
  PerformanceObserver.prototype.observe = function (this: PerformanceObserver, options: Parameters<PerformanceObserver['observe']>[0]) {
    const o = (options ?? {}) as { entryTypes?: string[]; type?: string };
    observed.push(o.entryTypes ?? (o.type ? [o.type] : []));
    return realObserve.call(this, options);
  } as PerformanceObserver['observe'];
}
afterEach(() => {
  PerformanceObserver.prototype.observe = realObserve;
  observed.length = 0;
});
const gcObservers = () => observed.filter((types) => types.includes('gc')).length;

describe('default Node.js metrics', () => {
  it("are prom-client's own set under the same names and help, without the _total gauges and, by default, without the GC histogram", async () => {
    const reference = new Registry();
    collectDefaultMetrics({ register: reference });
    for (const name of DROPPED_DEFAULT_METRICS) reference.removeSingleMetric(name);
    const all = await heads(reference);
    expect(all.some((l) => l.includes(GC))).toBe(true);

    recordObserve();
    const off = new Registry();
    registerDefaultMetrics(off);
    expect(await heads(off)).toEqual(all.filter((l) => !l.includes(` ${GC} `)));
    // Not just hidden: no gc observer exists, so collections cost nothing extra.
    expect(gcObservers()).toBe(0);

    const on = new Registry();
    registerDefaultMetrics(on, { gcDuration: true });
    expect(await heads(on)).toEqual(all);
    expect(gcObservers()).toBe(1);
  });

  it('with gcDuration, collections are observed into nodejs_gc_duration_seconds{kind}', async () => {
    const r = new Registry();
    registerDefaultMetrics(r, { gcDuration: true });
    const count = async () => sample(await r.metrics(), `${GC}_count{kind="minor"}`) ?? 0;
    let junk: unknown[] = [];
    const until = Date.now() + 10_000;
    // Allocate until a scavenge has been reported (entries arrive on a later turn).
    while ((await count()) === 0 && Date.now() < until) {
      for (let i = 0; i < 50_000; i++) junk.push({ i, s: `x${i}` });
      junk = [];
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await count()).toBeGreaterThan(0);
  });

  it('SidecarMetrics and AuthorityMetrics pass gcDuration through (off unless asked)', async () => {
    const text = async (gcDuration?: boolean) => {
      const s = new SidecarMetrics(() => [], () => undefined, { routes: ['a'], version: 't', gcDuration });
      const a = new AuthorityMetrics(async () => [], { credentials: [], version: 't', gcDuration });
      return [await s.registry.metrics(), await a.registry.metrics()];
    };
    for (const t of await text()) expect(t).not.toContain(GC);
    for (const t of await text(false)) expect(t).not.toContain(GC);
    for (const t of await text(true)) expect(t).toContain(`# TYPE ${GC} histogram`);
  });
});

describe('config: metrics.gcDuration', () => {
  const sidecar = (extra: string) => `routes:\n  a:\n    upstream: "http://127.0.0.1:1"\n    credential: { env: K }\n    inject: { header: authorization, format: "Bearer {{credential}}" }\n    allow: ["GET /**"]\n${extra}`;
  const authority = (extra: string) =>
    `trustDomain: example.org\ncredentials:\n  c: { kind: static, source: { env: K } }\npolicies:\n  - identities: ["spiffe://example.org/**"]\n    credentials: [c]\n${extra}`;
  const problems = (fn: () => unknown): string[] => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return [...(err as ConfigError).issues];
    }
    throw new Error('expected a ConfigError');
  };

  it('defaults to off in sidecar and authority files, and takes a boolean', () => {
    expect(parseConfig(sidecarSchema, sidecar(''), { K: 'k' }).metrics).toEqual({ gcDuration: false });
    expect(parseConfig(sidecarSchema, sidecar('metrics: { gcDuration: true }\n'), { K: 'k' }).metrics).toEqual({ gcDuration: true });
    expect(parseConfig(authoritySchema, authority(''), { K: 'k' }).metrics).toEqual({ gcDuration: false });
    expect(parseConfig(authoritySchema, authority('metrics: { gcDuration: true }\n'), { K: 'k' }).metrics).toEqual({ gcDuration: true });
  });

  it('a wrong value or a misspelt key is named', () => {
    const bad = problems(() => parseConfig(sidecarSchema, sidecar('metrics: { gcDuration: "yes" }\n'), { K: 'k' }));
    expect(bad.join('\n')).toMatch(/metrics\.gcDuration/);
    const typo = problems(() => parseConfig(sidecarSchema, sidecar('metrics: { gcduration: true }\n'), { K: 'k' }));
    expect(typo.join('\n')).toMatch(/gcduration.*did you mean .gcDuration./);
  });
});

describe("prom-client's collectors: the require (dist/src) and the bundle's static imports", () => {
  it('give the same function for every name in metricsList, and nothing for an unknown name', () => {
    expect(collectDefaultMetrics.metricsList.length).toBeGreaterThanOrEqual(13);
    for (const name of collectDefaultMetrics.metricsList) {
      const required = promCollector(name);
      expect(typeof required, name).toBe('function');
      expect(bundledCollector(name), name).toBe(required);
    }
    for (const name of ['noSuchCollector', 'toString', '__proto__']) {
      expect(promCollector(name)).toBeUndefined();
      expect(bundledCollector(name)).toBeUndefined();
    }
  });
});
