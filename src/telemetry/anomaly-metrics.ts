import { Counter, type Registry } from 'prom-client';
import { ANOMALY_KINDS, type AnomalyKind } from '../sidecar/anomalies.js';

/**
 * `leash_anomalies_total{route,kind}` (docs/anomalies.md), on the sidecar's registry. Every
 * route × kind starts at 0, so a rate() or an alert on the first anomaly sees a change
 * from 0 rather than a series appearing. A non-loopback client refused before a route was
 * resolved counts under `noRoute`. Labels are bounded: routes from config, fixed kinds.
 */
export class AnomalyMetrics {
  private readonly counter: Counter<'route' | 'kind'>;

  constructor(registry: Registry, routes: readonly string[], noRoute: string) {
    this.counter = new Counter({
      name: 'leash_anomalies_total',
      help: 'Anomalies detected by the sidecar, by route and kind (new_operation, non_loopback_client, auth_failure_burst).',
      labelNames: ['route', 'kind'] as const,
      registers: [registry],
    });
    for (const route of routes) for (const kind of ANOMALY_KINDS) this.counter.inc({ route, kind }, 0);
    this.counter.inc({ route: noRoute, kind: 'non_loopback_client' }, 0);
  }

  anomaly(route: string, kind: AnomalyKind): void {
    this.counter.inc({ route, kind });
  }
}
