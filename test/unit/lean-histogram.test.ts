import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LeanHistogram } from '../../src/telemetry/lean-histogram.js';
import { seededRandom, seededUnit } from '../helpers/random.js';

/**
 * LeanHistogram must export exactly what prom-client's Histogram exports for the same
 * observations (dashboards and alerts read the text; nothing may tell them apart): the
 * same /metrics text in both content types and the same JSON, for values on, between and
 * beyond the bounds, label values that need escaping, zero() and reset().
 */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const LABELS = ['openai', 'github', 'x_y', 'quo"te', 'back\\slash', 'new\nline', '', 'ünï', '123'];

function pair(contentType?: string) {
  const refRegistry = new Registry();
  const leanRegistry = new Registry();
  if (contentType) for (const r of [refRegistry, leanRegistry]) r.setContentType(contentType as never);
  const ref = new Histogram({ name: 'h_seconds', help: 'A "help" \\ text.', labelNames: ['route'] as const, buckets: BUCKETS, registers: [refRegistry] });
  const lean = new LeanHistogram({ name: 'h_seconds', help: 'A "help" \\ text.', labelName: 'route', buckets: BUCKETS, registers: [leanRegistry] });
  return { refRegistry, leanRegistry, ref, lean };
}

/** Values on every bound, just beside each, between, zero, negative, tiny and far above. */
function* values(seed: number, count: number): Generator<number> {
  const unit = seededUnit(seed);
  const edges = [0, -1, 1e-9, 200, 1e9, ...BUCKETS, ...BUCKETS.map((b) => b * (1 + 1e-12)), ...BUCKETS.map((b) => b * (1 - 1e-12))];
  for (let i = 0; i < count; i++) yield i < edges.length ? edges[i]! : unit() * 150;
}

describe('LeanHistogram', () => {
  for (const contentType of [undefined, Registry.OPENMETRICS_CONTENT_TYPE]) {
    it(`exports what prom-client's Histogram exports (${contentType ?? 'Prometheus text'}), as series appear and grow`, async () => {
      const { refRegistry, leanRegistry, ref, lean } = pair(contentType);
      expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
      const pick = seededRandom(7);
      const children = new Map<string, ReturnType<LeanHistogram['child']>>();
      let n = 0;
      for (const v of values(11, 3_000)) {
        const label = LABELS[pick() % LABELS.length]!;
        let c = children.get(label);
        if (!c) children.set(label, (c = lean.child(label)));
        c.observe(v);
        ref.observe({ route: label }, v);
        if (++n % 500 === 0) {
          expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
          expect(await leanRegistry.getMetricsAsJSON()).toEqual(await refRegistry.getMetricsAsJSON());
        }
      }
      expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
      expect(await leanRegistry.getMetricsAsJSON()).toEqual(await refRegistry.getMetricsAsJSON());
    });
  }

  it('zero() creates a series at zero or sets one back, in the same place; reset() removes all', async () => {
    const { refRegistry, leanRegistry, ref, lean } = pair();
    lean.zero('b');
    ref.zero({ route: 'b' });
    lean.zero('a');
    ref.zero({ route: 'a' });
    expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
    const b = lean.child('b');
    for (const v of [0.001, 0.3, 7, 500]) {
      b.observe(v);
      ref.observe({ route: 'b' }, v);
    }
    lean.child('c').observe(0.02);
    ref.observe({ route: 'c' }, 0.02);
    expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
    lean.zero('b');
    ref.zero({ route: 'b' });
    expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
    expect(await leanRegistry.metrics()).toMatch(/^h_seconds_count\{route="b"\} 0$/m);
    leanRegistry.resetMetrics();
    refRegistry.resetMetrics();
    expect(await leanRegistry.metrics()).toBe(await refRegistry.metrics());
    expect(await leanRegistry.metrics()).not.toMatch(/route=/);
  });

  it('ignores a value that is not a finite number (prom-client would throw into the request path)', async () => {
    const { leanRegistry, lean } = pair();
    const c = lean.child('r');
    for (const v of [NaN, Infinity, -Infinity]) c.observe(v);
    c.observe(0.2);
    const text = await leanRegistry.metrics();
    expect(text).toMatch(/^h_seconds_count\{route="r"\} 1$/m);
    expect(text).toMatch(/^h_seconds_sum\{route="r"\} 0\.2$/m);
  });

  it('refuses buckets that are not ascending, and a name already registered', () => {
    expect(() => new LeanHistogram({ name: 'x', help: 'x', labelName: 'r', buckets: [1, 1], registers: [] })).toThrow(/ascending/);
    const registry = new Registry();
    new LeanHistogram({ name: 'x', help: 'x', labelName: 'r', buckets: [1], registers: [registry] });
    expect(() => new Histogram({ name: 'x', help: 'x', registers: [registry] })).toThrow(/already been registered/);
  });
});
