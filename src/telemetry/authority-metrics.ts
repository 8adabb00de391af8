import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The authority's metrics (DESIGN §8), each defined once behind a named helper. */
export interface ActiveLeaseView {
  credential: string;
  ageSeconds: number;
}

export class AuthorityMetrics {
  readonly registry = new Registry();
  private readonly issued = new Counter({
    name: 'leash_authority_leases_issued_total',
    help: 'Lease requests by credential and result (issued, denied, failed).',
    labelNames: ['credential', 'result'] as const,
    registers: [this.registry],
  });
  private readonly bootstraps = new Counter({
    name: 'leash_authority_bootstrap_total',
    help: 'Identity bootstraps and renewals by method (join_token, renew) and result.',
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
  private readonly issueLatency = new Histogram({
    name: 'leash_authority_issue_duration_seconds',
    help: 'Time to issue one lease (policy, issuer, store).',
    labelNames: ['credential'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  constructor(activeLeases: () => Promise<readonly ActiveLeaseView[]>) {
    collectDefaultMetrics({ register: this.registry, prefix: 'leash_authority_' });
    // Both views are computed from the store at scrape time, so every replica reports the
    // fleet. One store read serves both collectors of a scrape.
    let snapshot: { at: number; leases: Promise<readonly ActiveLeaseView[]> } | undefined;
    const leases = () => {
      const now = Date.now();
      if (!snapshot || now - snapshot.at > 1_000) snapshot = { at: now, leases: activeLeases().catch(() => []) };
      return snapshot.leases;
    };
    new Gauge({
      name: 'leash_authority_leases_active',
      help: 'Unexpired leases, by credential.',
      labelNames: ['credential'] as const,
      registers: [this.registry],
      async collect() {
        const counts = new Map<string, number>();
        for (const l of await leases()) counts.set(l.credential, (counts.get(l.credential) ?? 0) + 1);
        this.reset();
        for (const [credential, n] of counts) this.set({ credential }, n);
      },
    });
    new Histogram({
      name: 'leash_authority_active_lease_age_seconds',
      help: 'Distribution of the age of unexpired leases at scrape time.',
      buckets: [10, 30, 60, 300, 900, 1800, 3600, 7200, 86400],
      registers: [this.registry],
      async collect() {
        const all = await leases();
        this.reset();
        for (const l of all) this.observe(l.ageSeconds);
      },
    });
  }

  leaseIssued(credential: string, result: 'issued' | 'denied' | 'failed', seconds?: number): void {
    this.issued.inc({ credential, result });
    if (seconds !== undefined) this.issueLatency.observe({ credential }, seconds);
  }
  policyDenied(credential: string): void {
    this.denials.inc({ credential });
  }
  bootstrap(method: 'join_token' | 'renew', result: 'success' | 'failure'): void {
    this.bootstraps.inc({ method, result });
  }
  revoked(scope: string): void {
    this.revocations.inc({ scope });
  }
}
