import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { REVOCATION_SCOPES } from '../core/protocol.js';
import { BUILD_INFO_HELP, registerDefaultMetrics, registerLogMetrics } from './default-metrics.js';
import { OptionalGauge } from './optional-gauge.js';

/** The authority's metrics (DESIGN §8), each defined once behind a named helper. */
export interface ActiveLeaseView {
  credential: string;
  ageSeconds: number;
}

/** Upper bounds (seconds) of the lease-age buckets, `+Inf` added; fixed: alerts and the dashboard name them. */
export const LEASE_AGE_BUCKETS = [60, 300, 900, 1800, 3600, 21600, 86400] as const;
/** A scrape within this long of the last store read reuses it (several replicas × scrapers). */
export const LEASE_SNAPSHOT_TTL_MS = 5_000;
/** At most this many leases are read per snapshot: one GET each on Redis. */
export const LEASE_SCAN_LIMIT = 10_000;
/** What the authority detects itself (`leash_authority_anomalies_total{kind}`; the sidecar's kinds are in sidecar/anomalies.ts). */
export const AUTHORITY_ANOMALY_KINDS = ['cloned_credential'] as const;
export type AuthorityAnomalyKind = (typeof AUTHORITY_ANOMALY_KINDS)[number];
/** Credential label for lease requests naming no configured credential (authority.ts). */
export const UNKNOWN_CREDENTIAL = '_unknown';

export interface LeaseAgeSummary {
  active: number;
  /** cumulative[i] = leases with age ≤ LEASE_AGE_BUCKETS[i]; the last entry is +Inf (all). */
  cumulative: number[];
  oldestSeconds: number | undefined;
}

/**
 * Pure: per credential, the number of active leases at most each bucket's age old
 * (cumulative, as Prometheus `le` buckets are) and the oldest age. Every name in
 * `credentials` appears, with zeros when it has no lease.
 */
export function summariseLeaseAges(leases: readonly ActiveLeaseView[], credentials: readonly string[]): Map<string, LeaseAgeSummary> {
  const out = new Map<string, LeaseAgeSummary>();
  const entry = (c: string) => {
    let e = out.get(c);
    if (!e) out.set(c, (e = { active: 0, cumulative: new Array<number>(LEASE_AGE_BUCKETS.length + 1).fill(0), oldestSeconds: undefined }));
    return e;
  };
  for (const c of credentials) entry(c);
  for (const l of leases) {
    const e = entry(l.credential);
    // A clock step can make a fresh lease look issued in the future: count it as age 0.
    const age = Math.max(0, l.ageSeconds);
    e.active++;
    for (let i = 0; i < LEASE_AGE_BUCKETS.length; i++) if (age <= LEASE_AGE_BUCKETS[i]!) e.cumulative[i]!++;
    e.cumulative[LEASE_AGE_BUCKETS.length]!++;
    if (e.oldestSeconds === undefined || age > e.oldestSeconds) e.oldestSeconds = age;
  }
  return out;
}

export interface AuthorityMetricsOptions {
  /** Configured credential names: their label sets are created at 0. */
  credentials: readonly string[];
  version: string;
  /** Monotonic ms, for the snapshot cache (tests inject it). */
  now?: () => number;
  /** `nodejs_gc_duration_seconds` (config `metrics.gcDuration`; default-metrics.ts). */
  gcDuration?: boolean;
  /** Redis' clock minus this replica's in ms, as last sampled (undefined: no Redis, or not sampled yet). */
  storeClockOffsetMs?: () => number | undefined;
  /** The kid of the JWT key this replica signs with now (undefined: none). */
  signingKid?: () => string | undefined;
  /** notAfter (ms) of the signing CA and of the listener's current TLS certificate. */
  certificateExpiryMs?: () => { ca: number; tls: number | undefined };
}

export class AuthorityMetrics {
  readonly registry = new Registry();
  /** Client certificates verified, by the CA that issued them: the signing CA or one of ca.trustedCertFiles. */
  private readonly clientCerts = new Counter({
    name: 'leash_authority_client_certificates_total',
    help: 'Client certificates accepted (once per TLS connection), by the CA that issued them: ca="signing" (ca.certFile) or ca="trusted" (one of ca.trustedCertFiles; zero for a whole identity.ttl: the previous CA can go).',
    labelNames: ['ca'] as const,
    registers: [this.registry],
  });
  private readonly issued = new Counter({
    name: 'leash_authority_leases_issued_total',
    help: 'Lease requests by credential and result (issued, denied, failed, rate_limited).',
    labelNames: ['credential', 'result'] as const,
    registers: [this.registry],
  });
  private readonly bootstraps = new Counter({
    name: 'leash_authority_bootstrap_total',
    help: 'Identity bootstraps and renewals by method (join_token, kubernetes, renew) and result.',
    labelNames: ['method', 'result'] as const,
    registers: [this.registry],
  });
  private readonly denials = new Counter({
    name: 'leash_authority_policy_denials_total',
    help: 'Lease requests refused by policy, by credential.',
    labelNames: ['credential'] as const,
    registers: [this.registry],
  });
  private readonly revocations = new Counter({
    name: 'leash_authority_revocations_total',
    help: 'Revocations published, by scope.',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });
  /** Fleet-wide anomalies the authority finds in the audit stream (docs/anomalies.md). */
  private readonly anomalies = new Counter({
    name: 'leash_authority_anomalies_total',
    help: 'Anomalies this replica found in the shared audit stream, by credential (_unknown: not configured or unreadable) and kind (cloned_credential: one lease in use on two instances).',
    labelNames: ['credential', 'kind'] as const,
    registers: [this.registry],
  });
  private readonly issueLatency = new Histogram({
    name: 'leash_authority_issue_duration_seconds',
    help: 'Time to issue one lease (policy, issuer, store).',
    labelNames: ['credential'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  /**
   * `activeLeases(limit)` reads at most `limit` unexpired leases from the store. It is
   * called at scrape time, at most once per LEASE_SNAPSHOT_TTL_MS (concurrent scrapes
   * share the read), so every replica reports the fleet at a bounded cost.
   */
  constructor(activeLeases: (limit: number) => Promise<readonly ActiveLeaseView[]>, options: AuthorityMetricsOptions = { credentials: [], version: 'unknown' }) {
    const now = options.now ?? (() => performance.now());
    registerDefaultMetrics(this.registry, { gcDuration: options.gcDuration });
    registerLogMetrics(this.registry);
    new Gauge({ name: 'leash_build_info', help: BUILD_INFO_HELP, labelNames: ['version'] as const, registers: [this.registry] }).set({ version: options.version }, 1);

    type Snapshot = { ok: true; byCredential: Map<string, LeaseAgeSummary>; truncated: boolean } | { ok: false };
    let cached: { at: number; snapshot: Promise<Snapshot> } | undefined;
    const snapshot = (): Promise<Snapshot> => {
      const t = now();
      if (!cached || t - cached.at >= LEASE_SNAPSHOT_TTL_MS) {
        cached = {
          at: t,
          snapshot: activeLeases(LEASE_SCAN_LIMIT).then(
            (leases) => ({ ok: true, byCredential: summariseLeaseAges(leases, options.credentials), truncated: leases.length >= LEASE_SCAN_LIMIT }),
            // A failed read reports no lease series rather than zeros that would read as "no leases".
            (): Snapshot => ({ ok: false }),
          ),
        };
      }
      return cached.snapshot;
    };
    new Gauge({
      name: 'leash_authority_leases_active',
      help: 'Unexpired leases, by credential (a snapshot of the store at scrape time).',
      labelNames: ['credential'] as const,
      registers: [this.registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        if (s.ok) for (const [credential, e] of s.byCredential) this.set({ credential }, e.active);
      },
    });
    // Snapshot semantics: each scrape is the distribution *now*, so it goes up and down. A
    // histogram (counter buckets) would tell rate() that leases were observed again at every
    // scrape. Same `le` bucket shape as a histogram, so a Grafana heatmap reads it directly.
    // Exposed as `untyped`: promtool refuses an `le` label on a gauge ("non-histogram
    // metrics should not have le label") but lints untyped metrics leniently; PromQL and
    // Grafana ignore the declared type.
    const ages = new Gauge({
      name: 'leash_authority_active_lease_age_seconds',
      help: 'Active leases whose age is at most le seconds, by credential (cumulative; a snapshot at scrape time, not a counter).',
      labelNames: ['credential', 'le'] as const,
      registers: [this.registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        if (!s.ok) return;
        for (const [credential, e] of s.byCredential) {
          e.cumulative.forEach((n, i) => this.set({ credential, le: i < LEASE_AGE_BUCKETS.length ? String(LEASE_AGE_BUCKETS[i]) : '+Inf' }, n));
        }
      },
    });
    (ages as unknown as { type: string }).type = 'untyped';
    new Gauge({
      name: 'leash_authority_oldest_active_lease_seconds',
      help: 'Age in seconds of the oldest active lease, by credential (absent while a credential has none).',
      labelNames: ['credential'] as const,
      registers: [this.registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        if (!s.ok) return;
        for (const [credential, e] of s.byCredential) if (e.oldestSeconds !== undefined) this.set({ credential }, e.oldestSeconds);
      },
    });
    new Gauge({
      name: 'leash_authority_lease_snapshot_truncated',
      help: `1 when the last lease snapshot hit its limit (${LEASE_SCAN_LIMIT} leases, those expiring soonest): the lease gauges then undercount.`,
      registers: [this.registry],
      async collect() {
        const s = await snapshot();
        this.set(s.ok && s.truncated ? 1 : 0);
      },
    });

    // Replicas take the later of their clock and Redis' for revocation times and certificate
    // checks (authority.md, "Several replicas"): a Redis far ahead fails every sidecar closed, one far
    // behind leaves the replica's own clock in charge. Either way an SRE must see it.
    const offset = options.storeClockOffsetMs;
    new OptionalGauge({
      name: 'leash_authority_store_clock_offset_seconds',
      help: "Redis' clock minus this replica's, in seconds, as last sampled (absent without Redis).",
      registers: [this.registry],
      read: () => {
        const ms = offset?.();
        return ms === undefined ? undefined : ms / 1000;
      },
    });

    // What expires in a year in production: the CA (every identity with it) and the
    // listener's certificate (every sidecar's call). Alert well before either.
    const expiry = options.certificateExpiryMs;
    new Gauge({
      name: 'leash_authority_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the signing CA (certificate="ca") and of the HTTPS listener\'s current certificate (certificate="tls"), Unix seconds.',
      labelNames: ['certificate'] as const,
      registers: [this.registry],
      collect() {
        const e = expiry?.();
        this.reset();
        if (e) {
          this.set({ certificate: 'ca' }, e.ca / 1000);
          if (e.tls !== undefined) this.set({ certificate: 'tls' }, e.tls / 1000);
        }
      },
    });

    // Every replica must sign with the same key once a rotation is done:
    // count(count by (kid) (leash_authority_signing_key_info)) > 1 says one lags.
    const signingKid = options.signingKid;
    new Gauge({
      name: 'leash_authority_signing_key_info',
      help: 'The JWT signing key this replica signs with now (kid = RFC 7638 thumbprint, as in the JWKS); always 1.',
      labelNames: ['kid'] as const,
      registers: [this.registry],
      collect() {
        const kid = signingKid?.();
        this.reset();
        if (kid !== undefined) this.set({ kid }, 1);
      },
    });

    // Every known label set at 0, so increase() sees the first event.
    this.clientCerts.inc({ ca: 'signing' }, 0);
    this.clientCerts.inc({ ca: 'trusted' }, 0);
    for (const credential of [...options.credentials, UNKNOWN_CREDENTIAL]) {
      for (const result of ['issued', 'denied', 'failed', 'rate_limited'] as const) this.issued.inc({ credential, result }, 0);
      this.denials.inc({ credential }, 0);
      for (const kind of AUTHORITY_ANOMALY_KINDS) this.anomalies.inc({ credential, kind }, 0);
    }
    for (const method of ['join_token', 'kubernetes', 'renew'] as const) for (const result of ['success', 'failure'] as const) this.bootstraps.inc({ method, result }, 0);
    for (const method of ['join_token', 'kubernetes'] as const) this.bootstraps.inc({ method, result: 'rate_limited' }, 0);
    for (const scope of REVOCATION_SCOPES) this.revocations.inc({ scope }, 0);
  }

  leaseIssued(credential: string, result: 'issued' | 'denied' | 'failed' | 'rate_limited', seconds?: number): void {
    this.issued.inc({ credential, result });
    if (seconds !== undefined) this.issueLatency.observe({ credential }, seconds);
  }
  anomaly(credential: string, kind: AuthorityAnomalyKind): void {
    this.anomalies.inc({ credential, kind });
  }
  policyDenied(credential: string): void {
    this.denials.inc({ credential });
  }
  clientCertificate(ca: 'signing' | 'trusted'): void {
    this.clientCerts.inc({ ca });
  }

  bootstrap(method: 'join_token' | 'kubernetes' | 'renew', result: 'success' | 'failure' | 'rate_limited'): void {
    this.bootstraps.inc({ method, result });
  }
  revoked(scope: string): void {
    this.revocations.inc({ scope });
  }
}
