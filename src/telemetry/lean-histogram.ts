import type { Registry } from 'prom-client';

/**
 * A histogram with one label, registered in a prom-client Registry like any of its metrics
 * and exported exactly as prom-client's `Histogram` exports it (the same text and JSON:
 * test/unit/metrics-request-cache.test.ts and test/unit/lean-histogram.test.ts compare them),
 * for the one histogram observed on every request.
 *
 * Why not prom-client's: its `observe` — through a `labels()` child too — makes a closure and
 * a label/value pair, validates the label names, builds the series' hash string and does
 * two `hasOwnProperty` lookups keyed by the bucket bound, per observation: ~4,300
 * instructions of the sidecar's per-request ~337,000 (bench/RESULTS.md, "The request
 * duration histogram"). Here a series is an object made once per label value; observing is
 * a scan of ≤ 15 bounds and three additions.
 */
export interface HistogramSeries {
  observe(value: number): void;
}

class Series implements HistogramSeries {
  /** Non-cumulative count per bound (cumulated at export, as prom-client does). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labelValue: string,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  /** prom-client's semantics: the first bound ≥ value; above the last one, only +Inf (count). A non-finite value is ignored (prom-client throws). */
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }

  zero(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/** One exported sample, in prom-client's shape (registry.ts formats these). */
interface Sample {
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  value: number;
  metricName: string;
  exemplar?: null;
}

export interface LeanHistogramOptions {
  name: string;
  help: string;
  labelName: string;
  /** Upper bounds, ascending. */
  buckets: readonly number[];
  registers: Registry[];
}

export class LeanHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly labelName: string;
  private readonly bounds: Float64Array;
  /** By label value, in first-seen order (prom-client's export order). */
  private series = new Map<string, Series>();

  constructor(o: LeanHistogramOptions) {
    for (let i = 1; i < o.buckets.length; i++) if (!(o.buckets[i]! > o.buckets[i - 1]!)) throw new Error(`${o.name}: buckets must be ascending`);
    this.name = o.name;
    this.help = o.help;
    this.labelName = o.labelName;
    this.bounds = Float64Array.from(o.buckets);
    for (const r of o.registers) r.registerMetric(this as never);
  }

  /** The series of one label value, made on first use (one Map lookup; keep it to skip even that). */
  child(labelValue: string): HistogramSeries {
    return this.seriesOf(labelValue);
  }

  /** Creates the series at zero, or sets it back to zero (prom-client's `zero`). */
  zero(labelValue: string): void {
    this.seriesOf(labelValue).zero();
  }

  private seriesOf(labelValue: string): Series {
    let s = this.series.get(labelValue);
    if (s === undefined) this.series.set(labelValue, (s = new Series(labelValue, this.bounds)));
    return s;
  }

  /** prom-client's `reset`: every series gone (children handed out before stop being exported). */
  reset(): void {
    this.series = new Map();
  }

  /** What prom-client's Registry reads for the text format: labels of each series as shared labels. */
  getForPromString(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(true), aggregator: this.aggregator };
  }

  /** What prom-client's `get()` returns (getMetricsAsJSON): the series' label merged into each sample's labels. */
  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(false), aggregator: this.aggregator };
  }

  private samples(shared: boolean): Sample[] {
    const out: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      const own = { [this.labelName]: s.labelValue };
      const sample = (labels: Record<string, string | number>, value: number, metricName: string, exemplar?: null): Sample =>
        shared ? { labels, sharedLabels: own, value, metricName, exemplar } : { labels: { ...labels, ...own }, value, metricName, exemplar };
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        out.push(sample({ le: this.bounds[i]! }, acc, bucket, null));
      }
      out.push(sample({ le: '+Inf' }, s.count, bucket, null));
      out.push(sample({}, s.sum, `${this.name}_sum`));
      out.push(sample({}, s.count, `${this.name}_count`));
    }
    return out;
  }
}
