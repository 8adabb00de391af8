import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LeanHistogram } from './lean-histogram.js';
import { OptionalGauge } from './optional-gauge.js';
import { HTTP_ERROR_TYPES } from '../core/errors.js';
import { REVOCATION_SCOPES } from '../core/protocol.js';
import type { AuthFailureSkip } from '../sidecar/credentials/rotation.js';
import { BUILD_INFO_HELP, registerDefaultMetrics, registerLogMetrics } from './default-metrics.js';

/**
 * The sidecar's metrics (DESIGN §8), each defined once behind a named helper. Labels
 * are bounded: routes come from config, methods are folded into a fixed set, statuses
 * are numbers. No label ever carries a credential or a path.
 */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Index of each method label value in REQUEST_METHODS; anything else is OTHER. */
const METHOD_INDEX = new Map([...METHODS].map((m, i) => [m, i] as const));
const OTHER_INDEX = METHODS.size;

interface PendingCount {
  readonly labels: { route: string; method: string; code: number };
  n: number;
}
export const NO_ROUTE = '_none';

/**
 * Label sets created at 0 when the registry is made, so `increase()`/`rate()` see the
 * first event (a series born at 1 has no earlier sample to increase from). Bounded:
 * routes come from config; the rest are the fixed value sets below.
 */
export const ROTATION_RESULTS = ['success', 'failure', 'rejected'] as const;
export const AUTH_FAILURE_STATUSES = [401, 403] as const;
export const REFRESH_SKIP_REASONS: readonly AuthFailureSkip[] = ['stale', 'coalesced', 'window', 'refused-value'];
export const REQUEST_METHODS = [...METHODS, 'OTHER'] as const;
/**
 * The request counter is pre-created for every route × method × the statuses that mean
 * leash could not serve (credential unavailable or shutting down 503, upstream unreachable
 * or bad 502, upstream timeout 504): the ones availability alerts key on. Other codes
 * (the upstream's own, unbounded) appear when first seen.
 */
export const PRECREATED_REQUEST_CODES = [502, 503, 504] as const;

export interface CredentialGaugeState {
  route: string;
  available: boolean;
  /** A lease held past its scheduled refresh and not yet replaced; false for static sources. */
  refreshOverdue: boolean;
  ageSeconds: number | undefined;
  ttlRemainingSeconds: number | undefined;
}

export class SidecarMetrics {
  readonly registry = new Registry();
  /**
   * Counts not yet handed to prom-client, by route then `methodIndex * 1000 + code`
   * (numeric: no key string built per request). prom-client hashes and validates the label
   * object on every `inc` (its `labels()` children too); this keeps that to one call per
   * series per scrape. Bounded as the series are: config routes (+ NO_ROUTE) × 8 method
   * values × codes (Node only accepts 100–999). Entries are zeroed, never deleted, and
   * flushed from `pendingOrder` so new series reach prom-client in first-seen order, as
   * they did when counted directly (the /metrics text is unchanged).
   */
  private readonly pendingRequests = new Map<string, Map<number, PendingCount>>();
  private readonly pendingOrder: PendingCount[] = [];
  private readonly requests = new Counter({
    name: 'leash_requests_total',
    help: 'Requests answered by the sidecar, by route, method and HTTP status code.',
    labelNames: ['route', 'method', 'code'] as const,
    registers: [this.registry],
    collect: () => this.flushRequests(),
  });
  /** Observed on every request: lean-histogram.ts (prom-client's observe costs ~4k instructions). */
  private readonly duration = new LeanHistogram({
    name: 'leash_request_duration_seconds',
    help: 'Time from request received to response finished (streams included).',
    labelName: 'route',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });
  private readonly denied = new Counter({
    name: 'leash_requests_denied_total',
    help: 'Requests refused before forwarding, by route and reason (leash error type).',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  });
  private readonly upstreamAuth = new Counter({
    name: 'leash_upstream_auth_failures_total',
    help: 'Upstream 401/403 answers, by route and status.',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly authRefreshSkipped = new Counter({
    name: 'leash_upstream_auth_refresh_skipped_total',
    help: 'Upstream 401/403 answers that started no credential refresh, by route and reason (stale, coalesced, window, refused-value).',
    labelNames: ['route', 'reason'] as const,
    registers: [this.registry],
  });

  private readonly rotations = new Counter({
    name: 'leash_credential_rotations_total',
    help: 'Credential changes picked up (success), failed refreshes (failure) and refused lease answers (rejected), by route.',
    labelNames: ['route', 'result'] as const,
    registers: [this.registry],
  });

  private readonly expired = new Counter({
    name: 'leash_credential_expired_total',
    help: 'Credentials that reached their safety margin before a replacement arrived, by route.',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });

  private readonly revocationsApplied = new Counter({
    name: 'leash_revocations_applied_total',
    help: 'Revocations received and applied, by scope (including those that matched nothing held); scope "unknown": written by a newer leash, applied as all.',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });
  private readonly revocationsMalformed = new Counter({
    name: 'leash_revocations_malformed_total',
    help: 'Stream entries and channel messages that are not revocations at all (no readable scope or time), skipped.',
    registers: [this.registry],
  });
  private readonly revocationLag = new Histogram({
    name: 'leash_revocation_lag_seconds',
    help: 'Time from a revocation being published to this sidecar applying it.',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  // Absent until a revocations: section starts its channel (optional-gauge.ts).
  private readonly channelUp = new OptionalGauge({
    name: 'leash_revocation_channel_up',
    help: '1 while the revocation channel is subscribed, caught up and answering heartbeats (absent without revocations).',
    registers: [this.registry],
  });

  constructor(
    credentialStates: () => readonly CredentialGaugeState[],
    identityTtl: () => number | undefined = () => undefined,
    known: { routes: readonly string[]; version: string; gcDuration?: boolean } = { routes: [], version: 'unknown' },
  ) {
    new Gauge({ name: 'leash_build_info', help: BUILD_INFO_HELP, labelNames: ['version'] as const, registers: [this.registry] }).set({ version: known.version }, 1);
    new OptionalGauge({
      name: 'leash_identity_ttl_remaining_seconds',
      help: 'Seconds until the sidecar identity certificate expires (absent without an authority).',
      registers: [this.registry],
      read: identityTtl,
    });
    registerDefaultMetrics(this.registry, { gcDuration: known.gcDuration });
    registerLogMetrics(this.registry);
    const gauge = (name: string, help: string, pick: (s: CredentialGaugeState) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['route'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of credentialStates()) {
            const v = pick(s);
            if (v !== undefined) this.set({ route: s.route }, v);
          }
        },
      });
    gauge('leash_credential_available', '1 when the route holds a usable credential, else 0.', (s) => (s.available ? 1 : 0));
    gauge('leash_credential_age_seconds', 'Seconds since the credential in use was acquired.', (s) => s.ageSeconds);
    gauge(
      'leash_credential_refresh_overdue',
      '1 while a lease is held past its scheduled refresh point and not yet replaced (the authority is not answering), else 0; always 0 for file and env sources.',
      (s) => (s.refreshOverdue ? 1 : 0),
    );
    gauge('leash_credential_ttl_remaining_seconds', 'Seconds until the credential in use expires (absent for non-expiring sources).', (s) => s.ttlRemainingSeconds);
    this.precreate(known.routes);
  }

  /** Every known label set at 0 (see the constants above). */
  private precreate(routes: readonly string[]): void {
    for (const scope of [...REVOCATION_SCOPES, 'unknown']) this.revocationsApplied.inc({ scope }, 0);
    for (const route of [...routes, NO_ROUTE]) {
      for (const reason of Object.keys(HTTP_ERROR_TYPES)) this.denied.inc({ route, reason }, 0);
    }
    for (const route of routes) {
      for (const method of REQUEST_METHODS) for (const code of PRECREATED_REQUEST_CODES) this.requests.inc({ route, method, code }, 0);
      for (const result of ROTATION_RESULTS) this.rotations.inc({ route, result }, 0);
      for (const status of AUTH_FAILURE_STATUSES) this.upstreamAuth.inc({ route, status }, 0);
      for (const reason of REFRESH_SKIP_REASONS) this.authRefreshSkipped.inc({ route, reason }, 0);
      this.expired.inc({ route }, 0);
      this.duration.zero(route);
    }
  }

  requestFinished(route: string, method: string, status: number, seconds: number): void {
    let byKey = this.pendingRequests.get(route);
    if (byKey === undefined) this.pendingRequests.set(route, (byKey = new Map()));
    const m = METHOD_INDEX.get(method) ?? OTHER_INDEX;
    const key = m * 1000 + status;
    const pending = byKey.get(key);
    if (pending !== undefined) pending.n++;
    else {
      const p = { labels: { route, method: REQUEST_METHODS[m]!, code: status }, n: 1 };
      byKey.set(key, p);
      this.pendingOrder.push(p);
    }
    this.duration.child(route).observe(seconds);
  }

  /** Hands the pending counts to prom-client (its collect hook: runs before every read). */
  private flushRequests(): void {
    for (const p of this.pendingOrder) {
      if (p.n === 0) continue;
      this.requests.inc(p.labels, p.n);
      p.n = 0;
    }
  }

  requestDenied(route: string, reason: string): void {
    this.denied.inc({ route, reason });
  }

  revocationApplied(scope: string, lagSeconds: number): void {
    this.revocationsApplied.inc({ scope });
    this.revocationLag.observe(Math.max(0, lagSeconds));
  }

  revocationMalformed(): void {
    this.revocationsMalformed.inc();
  }

  revocationChannel(up: boolean): void {
    this.channelUp.update(up ? 1 : 0);
  }

  credentialExpired(route: string): void {
    this.expired.inc({ route });
  }

  credentialRotation(route: string, result: 'success' | 'failure' | 'rejected'): void {
    this.rotations.inc({ route, result });
  }

  upstreamAuthFailure(route: string, status: number): void {
    this.upstreamAuth.inc({ route, status });
  }

  upstreamAuthRefreshSkipped(route: string, reason: string): void {
    this.authRefreshSkipped.inc({ route, reason });
  }
}
