import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/sidecar.js';
import type { Clock } from '../core/clock.js';
import { caBundleProblem } from '../core/ca-bundle.js';
import { ConfigError } from '../core/errors.js';
import { fingerprint } from '../core/fingerprint.js';
import type { SidecarMetrics } from '../telemetry/metrics.js';
import { AuthFailureRefresher } from './credentials/auth-failure.js';
import type { AuthorityClient } from './credentials/authority-client.js';
import { LeaseCredential } from './credentials/lease-credential.js';
import type { RotationPolicy } from './credentials/rotation.js';
import { EnvCredential, FileCredential } from './credentials/static-sources.js';
import type { CredentialEvent, CredentialProvider } from './credentials/types.js';
import { RouteRuntime } from './proxy/route.js';

/**
 * The configured routes, each with its credential source (a lease from the authority, a
 * file or an environment variable) and its bounded refresher after upstream 401/403, and
 * how audit events and /status name each source.
 */
export interface RouteInputs {
  config: SidecarConfig;
  env: Readonly<Record<string, string | undefined>>;
  /** caFile path → PEM text, read by the entry point. */
  caFiles: ReadonlyMap<string, string>;
  clock: Clock;
  rotation: RotationPolicy;
  /** Present when the config has an `authority:` section (lease names need it). */
  authority: AuthorityClient | undefined;
  onEvent(route: string, e: CredentialEvent): void;
}

export function buildRoutes(inputs: RouteInputs): Map<string, RouteRuntime> {
  const routes = new Map<string, RouteRuntime>();
  for (const [name, rc] of Object.entries(inputs.config.routes)) {
    const provider = providerFor(name, rc.credential, inputs);
    const ca = rc.caFile === undefined ? undefined : inputs.caFiles.get(rc.caFile);
    // A configured CA that was not loaded must not fall back to the system roots silently.
    if (rc.caFile !== undefined && ca === undefined) throw new ConfigError([`routes.${name}.caFile: ${rc.caFile} was not loaded`]);
    // Nor may one without a certificate: Node reads an empty CA as "the system roots" too.
    const problem = ca === undefined ? undefined : caBundleProblem(ca, `routes.${name}.caFile: ${rc.caFile}`);
    if (problem) throw new ConfigError([problem]);
    routes.set(name, new RouteRuntime(name, rc, provider, ca));
  }
  return routes;
}

function providerFor(route: string, source: string | { file: string } | { env: string }, inputs: RouteInputs): CredentialProvider {
  const onEvent = (e: CredentialEvent) => inputs.onEvent(route, e);
  // The config schema refuses a lease name without an `authority:` section.
  if (typeof source === 'string') return new LeaseCredential(source, inputs.authority!, inputs.clock, onEvent, inputs.rotation);
  return 'file' in source
    ? new FileCredential(source.file, inputs.config.credentialFiles.pollInterval, inputs.clock, onEvent)
    : new EnvCredential(source.env, inputs.env, inputs.clock, onEvent);
}

/** Per route: refreshes after upstream 401/403, bounded (at most one per window, none for a value re-issued unchanged). */
export function authFailureRefreshers(
  routes: ReadonlyMap<string, RouteRuntime>,
  config: SidecarConfig,
  clock: Clock,
  metrics: SidecarMetrics,
  log: Logger,
): Map<string, AuthFailureRefresher> {
  const { window, cap } = config.rotation.authFailure;
  const out = new Map<string, AuthFailureRefresher>();
  for (const { name: route, provider } of routes.values()) {
    const refresher = new AuthFailureRefresher(
      provider,
      clock,
      {
        skipped: (reason) => metrics.upstreamAuthRefreshSkipped(route, reason),
        // Once per fingerprint: leasing again would only hand back the same refused value.
        refusedValue: (fingerprint) =>
          log.warn(
            { route, credential: provider.description, fingerprint },
            'the upstream refuses the credential the authority issues: not refreshing on 401/403 until another value is held',
          ),
        failed: (err) => log.warn({ route, err }, 'refresh after upstream auth failure failed'),
      },
      { windowMs: window, capMs: cap },
    );
    out.set(route, refresher);
  }
  return out;
}

/** The routes whose credential is leased from the authority (what revocations act on). */
export function leaseProviders(routes: ReadonlyMap<string, RouteRuntime>): Array<{ route: string; provider: LeaseCredential }> {
  const out: Array<{ route: string; provider: LeaseCredential }> = [];
  for (const r of routes.values()) if (r.provider instanceof LeaseCredential) out.push({ route: r.name, provider: r.provider });
  return out;
}

/**
 * A route's credential source as /status (readable by the agent) and audit events show
 * it. A lease name appears once the authority has granted it; until then, since it may be
 * a typo or a secret pasted in as a name, only its fingerprint (`lease:sha256:…`, the
 * same the authority audits an unknown name under).
 */
export class SourceLabels {
  /** Routes whose lease name the authority has granted at least once. */
  private readonly granted = new Set<string>();

  grant(route: string): void {
    this.granted.add(route);
  }

  of(r: RouteRuntime): string {
    const p = r.provider;
    return p instanceof LeaseCredential && !this.granted.has(r.name) ? `lease:${fingerprint(p.credentialName)}` : p.description;
  }
}
