import type { SidecarConfig } from '../config/sidecar.js';
import type { Clock } from '../core/clock.js';
import { AuthorityCallError } from '../core/errors.js';
import { AnomalyMetrics } from '../telemetry/anomaly-metrics.js';
import type { Audit } from '../telemetry/audit.js';
import { NO_ROUTE, type SidecarMetrics } from '../telemetry/metrics.js';
import type { UsageRequest } from '../telemetry/usage.js';
import { AnomalyDetector, type Anomaly } from './anomalies.js';
import type { IdentityEvent } from './credentials/identity.js';
import type { CredentialEvent } from './credentials/types.js';
import type { RouteRuntime } from './proxy/route.js';
import type { RequestOutcome } from './proxy/server.js';
import type { SourceLabels } from './routes.js';

/**
 * What the sidecar reports of what happens to it: each finished request, upstream 401/403,
 * credential and identity events, turned into metrics, audit events (DESIGN §8), usage
 * summaries and anomalies (docs/anomalies.md). Decides nothing about serving.
 * requestDone runs once per request: it makes no objects beyond the event's own fields.
 */
export interface OutcomeSinks {
  instanceId: string;
  metrics: SidecarMetrics;
  audit: Audit;
  /** Per-request use, summarised into the audit stream (telemetry/usage-writer.ts); absent without Redis. */
  usage: { record(r: UsageRequest): void } | undefined;
  routes: ReadonlyMap<string, RouteRuntime>;
  labels: SourceLabels;
  clock: Clock;
  anomalies: SidecarConfig['anomalies'];
}

export class Outcomes {
  private readonly detector: AnomalyDetector;
  private readonly anomalyMetrics: AnomalyMetrics;

  constructor(private readonly s: OutcomeSinks) {
    const an = s.anomalies;
    this.detector = new AnomalyDetector(s.clock, {
      learningWindowMs: an.learningWindow,
      clientWindowMs: an.clientWindow,
      authFailureBurst: { count: an.authFailureBurst.count, windowMs: an.authFailureBurst.window },
      maxOperations: 10_000,
      maxClients: 1_000,
    });
    this.anomalyMetrics = new AnomalyMetrics(s.metrics.registry, [...s.routes.keys()], NO_ROUTE);
  }

  requestDone(o: RequestOutcome): void {
    const { metrics, audit } = this.s;
    const route = o.route ?? NO_ROUTE;
    metrics.requestFinished(route, o.method, o.status, o.durationMs / 1000);
    const r = o.route === undefined ? undefined : this.s.routes.get(o.route);
    const found = this.detector.request({
      route: o.route,
      // Only forwarded requests are operations; a refused one is request.denied already.
      rule: o.denied ? undefined : o.rule,
      credential: r && !o.denied ? this.s.labels.of(r) : undefined,
      method: o.method,
      remote: o.remote,
    });
    if (found) for (const a of found) this.anomaly(a);
    const fields = {
      instance: this.s.instanceId,
      route: o.route,
      method: o.method,
      path: o.path,
      status: o.status,
      durationMs: Math.round(o.durationMs * 1000) / 1000,
      fingerprint: o.credential?.fingerprint,
    };
    if (o.denied) {
      metrics.requestDenied(route, o.denied.type);
      audit.emit('request.denied', { ...fields, reason: o.denied.type });
    } else {
      audit.emit('request', fields);
    }
    this.s.usage?.record({ route: o.route, method: o.method, path: o.path, status: o.status, lease: o.credential?.lease, fingerprint: o.credential?.fingerprint, denied: o.denied?.type });
  }

  /** An upstream 401/403: counted, and a burst of them is an anomaly. */
  upstreamAuthFailure(route: string, status: number): void {
    this.s.metrics.upstreamAuthFailure(route, status);
    const burst = this.detector.authFailure(route);
    if (burst) this.anomaly(burst);
  }

  credentialEvent(route: string, e: CredentialEvent): void {
    const { metrics, audit } = this.s;
    const r = this.s.routes.get(route);
    const base = { instance: this.s.instanceId, route, credential: r && this.s.labels.of(r) };
    switch (e.kind) {
      case 'acquired':
        audit.emit('credential.acquired', { ...base, fingerprint: e.fingerprint, lease: e.lease });
        break;
      case 'rotated':
        metrics.credentialRotation(route, 'success');
        audit.emit('credential.rotated', { ...base, fingerprint: e.fingerprint, previousFingerprint: e.previousFingerprint, lease: e.lease });
        break;
      case 'refresh_failed':
        metrics.credentialRotation(route, e.error instanceof AuthorityCallError && e.error.kind === 'malformed' ? 'rejected' : 'failure');
        audit.emit('credential.refresh_failed', { ...base, error: e.error.message });
        break;
      case 'expired':
        metrics.credentialExpired(route);
        audit.emit('credential.expired', { ...base, fingerprint: e.fingerprint, lease: e.lease });
        break;
      case 'revoked':
        audit.emit('credential.revoked', { ...base, fingerprint: e.fingerprint, lease: e.lease, reason: e.reason });
        break;
    }
  }

  /** The identity's lifecycle as audit events (a failure is logged by the sidecar, with its reason). */
  identityEvent(e: IdentityEvent): void {
    const instance = this.s.instanceId;
    if (e.kind === 'bootstrapped') this.s.audit.emit('instance.bootstrapped', { instance, identity: e.identity });
    else if (e.kind === 'renewed') this.s.audit.emit('instance.renewed', { instance, identity: e.identity });
    else if (e.kind === 'lost') this.s.audit.emit('instance.revoked', { instance, identity: e.identity, reason: e.reason });
  }

  /** An anomaly: counted, and audited as `anomaly.<kind>` (an extension of DESIGN §8, docs/anomalies.md). */
  private anomaly(a: Anomaly): void {
    this.anomalyMetrics.anomaly(a.route ?? NO_ROUTE, a.kind);
    const { kind, ...fields } = a;
    this.s.audit.emit(`anomaly.${kind}`, { instance: this.s.instanceId, ...fields });
  }
}
