import { collectDefaultMetrics, Counter, type Registry } from 'prom-client';
import { droppedLogLines } from './log-batch.js';
import { promCollector } from './prom-collectors.js';

/**
 * prom-client's default process and Node.js metrics under their standard names (no
 * `leash_` prefix), so stock "Node.js" dashboards and `process_*` alerts find them.
 *
 * Three of them are gauges whose names end in `_total` (`nodejs_active_handles_total`,
 * `nodejs_active_requests_total`, `nodejs_active_resources_total`), which
 * `promtool check metrics` refuses ("non-counter metrics should not have _total suffix").
 * They are removed: each is the sum of its per-type sibling (`nodejs_active_handles{type}`,
 * `nodejs_active_requests{type}`, `nodejs_active_resources{type}`), so
 * `sum(nodejs_active_handles)` gives the same number.
 */
export const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/** prom-client's collector (its `metricsList` key) behind `nodejs_gc_duration_seconds`. */
const GC_COLLECTOR = 'gc';

export interface DefaultMetricsOptions {
  /**
   * `nodejs_gc_duration_seconds` (config `metrics.gcDuration`, off by default). It needs a
   * `gc` PerformanceObserver, and with one Node builds an entry and runs a callback for
   * every collection: ~5 % of the proxy's CPU at saturation (bench/RESULTS.md, "The GC
   * metric's cost at saturation"). Off, no observer is installed at all.
   */
  gcDuration?: boolean;
}

/**
 * Each of prom-client's default collectors is run on its own, in the order of its
 * `metricsList` (what `collectDefaultMetrics` runs), so one can be left out: prom-client has
 * no option to skip one, and removing a metric after the fact would leave its observer
 * running. test/unit/default-metrics.test.ts checks the result against
 * `collectDefaultMetrics` itself, so a prom-client upgrade that moves a collector fails there.
 */
export function registerDefaultMetrics(registry: Registry, options: DefaultMetricsOptions = {}): void {
  // collectDefaultMetrics' own defaults (it passes the same config to every collector).
  const config = { register: registry, eventLoopMonitoringPrecision: 10 };
  for (const name of collectDefaultMetrics.metricsList) {
    if (name === GC_COLLECTOR && options.gcDuration !== true) continue;
    const collector = promCollector(name);
    if (!collector) throw new Error(`prom-client's default collector "${name}" is not known to leash (prom-client upgraded?)`);
    collector(registry, config);
  }
  for (const name of DROPPED_DEFAULT_METRICS) if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
}

/** `<prefix>build_info{version} 1`: which build is running, joinable onto any other series. */
export const BUILD_INFO_HELP = 'Always 1; the version label names the leash build running.';

/**
 * `leash_log_lines_dropped_total`: log lines dropped because stdout was not being read
 * (log-batch.ts). Read at scrape time, so it shows while the reader is still stuck; the
 * log itself says so only once writing resumes.
 */
export function registerLogMetrics(registry: Registry): void {
  let seen = 0;
  new Counter({
    name: 'leash_log_lines_dropped_total',
    help: 'Log lines dropped because stdout was not being read (its buffer held 8 MiB); the log says how many once it drains.',
    registers: [registry],
    collect() {
      const total = droppedLogLines();
      this.inc(total - seen);
      seen = total;
    },
  });
}
