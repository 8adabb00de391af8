import { collectDefaultMetrics, type Registry } from 'prom-client';

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

export function registerDefaultMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of DROPPED_DEFAULT_METRICS) if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
}

/** `<prefix>build_info{version} 1`: which build is running, joinable onto any other series. */
export const BUILD_INFO_HELP = 'Always 1; the version label names the leash build running.';
