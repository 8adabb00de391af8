import type { Clock } from '../core/clock.js';
import type { CredentialGaugeState } from '../telemetry/metrics.js';
import type { IdentityManager } from './credentials/identity.js';
import { LeaseCredential } from './credentials/lease-credential.js';
import { usable } from './credentials/rotation.js';
import type { RouteRuntime } from './proxy/route.js';
import { decideReadiness, type Readiness } from './readiness.js';
import type { SourceLabels } from './routes.js';

/**
 * What /readyz, /status and the credential gauges report of the routes, and why what is
 * missing is missing: the last failure of each route and of the identity, kept until it
 * succeeds. Never a secret: error texts go through reasonFor, credentials are named by
 * SourceLabels and shown by fingerprint.
 */
export interface ReadinessReport extends Readiness {
  /** The last failure of the identity (while none is usable) and of each unavailable route. */
  errors: { identity?: string; routes: Record<string, string> };
}

/** Bounded, one line: the text of an error as /readyz shows it. */
const MAX_ERROR_TEXT = 300;
export const reasonFor = (err: Error): string => {
  const text = err.message.replace(/[^\x20-\x7e]+/g, ' ');
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 1)}…` : text;
};

export class Health {
  /** Why each route last failed; cleared when it succeeds. */
  private readonly lastErrors = new Map<string, string>();
  private identityError: string | undefined;

  constructor(
    private readonly routes: ReadonlyMap<string, RouteRuntime>,
    private readonly clock: Clock,
    private readonly labels: SourceLabels,
  ) {}

  routeSucceeded(route: string): void {
    this.lastErrors.delete(route);
  }

  routeFailed(route: string, err: Error): void {
    this.lastErrors.set(route, reasonFor(err));
  }

  identitySucceeded(): void {
    this.identityError = undefined;
  }

  /** Returns the reason as /readyz shows it (the authority's, made safe by authority-reason.ts). */
  identityFailed(err: Error): string {
    this.identityError = reasonFor(err);
    return this.identityError;
  }

  credentialStates(): CredentialGaugeState[] {
    const now = this.clock.monotonicMs();
    return [...this.routes.values()].map((r) => {
      const c = r.provider.current();
      const due = r.provider instanceof LeaseCredential ? r.provider.refreshDueAtMs() : undefined;
      return {
        route: r.name,
        refreshOverdue: due !== undefined && now >= due,
        available: c !== undefined && usable(c, now),
        ageSeconds: c ? (now - c.acquiredAtMs) / 1000 : undefined,
        ttlRemainingSeconds: c?.expiresAtMs !== undefined ? Math.max(0, (c.expiresAtMs - now) / 1000) : undefined,
      };
    });
  }

  readiness(phase: { started: boolean; shuttingDown: boolean }, identity: IdentityManager | undefined): ReadinessReport {
    const states = this.credentialStates().map((s) => ({ route: s.route, available: s.available, required: this.routes.get(s.route)!.config.required }));
    const decided = decideReadiness(states, phase);
    const routes: Record<string, string> = {};
    for (const name of decided.unavailable) {
      const why = this.lastErrors.get(name);
      if (why !== undefined) routes[name] = why;
    }
    const identityError = identity && !identity.usable() ? this.identityError : undefined;
    return { ...decided, errors: { ...(identityError !== undefined ? { identity: identityError } : {}), routes } };
  }

  /** Per route, for /status (readable by the agent: fingerprints, never values). */
  routeStatus(): Record<string, unknown> {
    const now = this.clock.monotonicMs();
    const available = new Map(this.credentialStates().map((s) => [s.route, s.available]));
    const routes: Record<string, unknown> = {};
    for (const r of this.routes.values()) {
      const c = r.provider.current();
      routes[r.name] = {
        upstream: r.origin + r.basePath,
        credential: this.labels.of(r),
        lease: c?.lease ?? null,
        fingerprint: c?.fingerprint ?? null,
        ageSeconds: c ? Math.round((now - c.acquiredAtMs) / 1000) : null,
        ttlRemainingSeconds: c?.expiresAtMs !== undefined ? Math.max(0, Math.round((c.expiresAtMs - now) / 1000)) : null,
        available: available.get(r.name) ?? false,
      };
    }
    return routes;
  }
}
