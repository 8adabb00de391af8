import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/sidecar.js';
import { type Clock, systemClock } from '../core/clock.js';
import { caBundleProblem } from '../core/ca-bundle.js';
import { ConfigError, ListenError } from '../core/errors.js';
import { listenErrorMessage } from '../core/listen.js';
import { AuthorityClient } from './credentials/authority-client.js';
import type { IdentityEvent, IdentityManager } from './credentials/identity.js';
import type { Audit } from '../telemetry/audit.js';
import type { UsageRequest } from '../telemetry/usage.js';
import { SidecarMetrics } from '../telemetry/metrics.js';
import { AdminServer } from './admin.js';
import { DEFAULT_ROTATION, type RotationPolicy } from './credentials/rotation.js';
import type { AuthFailureRefresher } from './credentials/auth-failure.js';
import type { MemoryRevocationBus } from '../bus/memory.js';
import type { RedisTarget } from '../bus/connect.js';
import type { ClientNames } from './proxy/browser-guard.js';
import type { CredentialEvent, HeldCredential } from './credentials/types.js';
import type { PassEnv } from './proxy/passes.js';
import type { RouteRuntime } from './proxy/route.js';
import { ProxyServer } from './proxy/server.js';
import type { NodeAttestor } from '../core/attestation.js';
import { joinTokenAttestor } from './credentials/attestors/join-token.js';
import { Health, type ReadinessReport } from './health.js';
import { Outcomes } from './outcomes.js';
import { RevocationHandler, revocationSource } from './revocation-handler.js';
import { cutsExchange } from './revocations.js';
import { authFailureRefreshers, buildRoutes, leaseProviders, SourceLabels } from './routes.js';

export type { ReadinessReport } from './health.js';

/**
 * The sidecar: routes with their credentials (routes.ts), the proxy, the admin listener,
 * revocations (revocation-handler.ts), what it reports (outcomes.ts, health.ts), and the
 * lifecycle: bind, start, stop. Receives everything it needs (config, environment, CA
 * files' contents, logger, clock); reads no files or env itself beyond the credential
 * sources it is given (and a Redis password named by the config, from the given `env`).
 */
export interface SidecarDeps {
  config: SidecarConfig;
  env: Readonly<Record<string, string | undefined>>;
  /** caFile path → PEM text, read by the entry point. */
  caFiles: ReadonlyMap<string, string>;
  logger: Logger;
  audit: Audit;
  clock?: Clock;
  /** PEM of the authority's CA (config authority.caFile), read by the entry point. */
  authorityCa?: string;
  /** Reads authority.caFile again (the entry point's reader): a changed bundle is trusted without a restart. */
  readAuthorityCa?: () => string;
  /** The one-time join token, read by the entry point when bootstrap needs it (used when no attestor is given). */
  joinToken?: () => string | undefined;
  /** How the identity is bootstrapped (src/sidecar/assemble.ts makes it from `authority.bootstrap`). */
  attestor?: NodeAttestor;
  /** `leash dev`: the in-process bus shared with the authority (instead of Redis). */
  revocationBus?: MemoryRevocationBus;
  /**
   * config.revocations.redis with its password read by the entry point. Without it the
   * sidecar takes the config's form as it is, and refuses (ConfigError) one whose password
   * is in a file (revocation-handler.ts revocationSource).
   */
  revocationsRedis?: RedisTarget;
  /**
   * What moves each listener, for the bind-error message (e.g. `listen: in FILE`,
   * `LEASH_LISTEN`): only the entry point knows where the address came from.
   */
  listenHints?: { proxy: string; admin: string };
  /**
   * Lease names known to exist before any grant (leash dev: its config's lease names are
   * checked against the in-process authority's credentials, so none is a typo or a secret):
   * shown by name from the start rather than as `lease:sha256:…`.
   */
  knownLeaseNames?: readonly string[];
  /** The package version for leash_build_info, read by the entry point. */
  version?: string;
  /** Per-request use, summarised into the audit stream (telemetry/usage-writer.ts); absent without Redis. */
  usage?: { record(r: UsageRequest): void };
}

export interface SidecarAddresses {
  proxy: AddressInfo;
  admin: AddressInfo;
}

export class Sidecar {
  readonly instanceId: string;
  readonly routes: Map<string, RouteRuntime>;
  readonly metrics: SidecarMetrics;
  private readonly proxy: ProxyServer;
  private readonly admin: AdminServer;
  private readonly outcomes: Outcomes;
  private readonly health: Health;
  private readonly revocations: RevocationHandler;
  private readonly labels = new SourceLabels();
  private readonly clock: Clock;
  private readonly log: Logger;
  private shuttingDown = false;
  private stopping: Promise<void> | undefined;
  /** start(), once: listeners, then revocations, identity and credentials. */
  private starting: Promise<SidecarAddresses> | undefined;
  private bound: Promise<SidecarAddresses> | undefined;
  /** The release of everything held; run once, by stop() or by a start that failed. */
  private tornDown: Promise<void> | undefined;
  private started = false;
  private readonly rotation: RotationPolicy;
  private readonly authFailures: ReadonlyMap<string, AuthFailureRefresher>;
  private readonly authority: AuthorityClient | undefined;
  /** Made at start when an authority is configured (loaded lazily: it brings the CSR code). */
  identity: IdentityManager | undefined;

  constructor(private readonly deps: SidecarDeps) {
    const { config, logger } = deps;
    this.clock = deps.clock ?? systemClock;
    this.instanceId = config.instance.id || `${hostname()}-${randomBytes(3).toString('hex')}`;
    this.log = logger.child({ instance: this.instanceId });
    this.rotation = {
      ...DEFAULT_ROTATION,
      refreshFraction: config.rotation.at,
      jitterFraction: config.rotation.jitter,
      backoff: { baseMs: config.rotation.backoff.base, capMs: config.rotation.backoff.cap },
    };
    const source = revocationSource(config.revocations, deps.revocationBus, deps.revocationsRedis, deps.env);
    if (config.authority) {
      if (deps.authorityCa === undefined) throw new ConfigError([`authority.caFile: ${config.authority.caFile} was not loaded`]);
      const problem = caBundleProblem(deps.authorityCa, `authority.caFile: ${config.authority.caFile}`);
      if (problem) throw new ConfigError([problem]);
      const caFile = config.authority.caFile;
      const read = deps.readAuthorityCa;
      this.authority = new AuthorityClient(
        config.authority.url,
        deps.authorityCa,
        config.authority.timeout,
        read && {
          read,
          onChange: (outcome) =>
            outcome === 'reloaded'
              ? this.log.info({ caFile }, 'authority.caFile changed: the authority is now verified against the new bundle')
              : this.log.warn({ caFile }, 'authority.caFile changed but holds no PEM certificate: keeping the bundle in use'),
        },
      );
    }
    const routes = buildRoutes({
      config,
      env: deps.env,
      caFiles: deps.caFiles,
      clock: this.clock,
      rotation: this.rotation,
      authority: this.authority,
      onEvent: (route, e) => this.credentialEvent(route, e),
    });
    this.routes = routes;
    const known = new Set(deps.knownLeaseNames ?? []);
    for (const { route, provider } of leaseProviders(routes)) if (known.has(provider.credentialName)) this.labels.grant(route);
    this.health = new Health(routes, this.clock, this.labels);
    this.metrics = new SidecarMetrics(() => this.health.credentialStates(), () => this.identity?.ttlRemainingSeconds(), {
      routes: [...routes.keys()],
      version: deps.version ?? 'unknown',
      gcDuration: config.metrics.gcDuration,
    });
    this.authFailures = authFailureRefreshers(routes, config, this.clock, this.metrics, this.log);
    this.outcomes = new Outcomes({
      instanceId: this.instanceId,
      metrics: this.metrics,
      audit: deps.audit,
      usage: deps.usage,
      routes,
      labels: this.labels,
      clock: this.clock,
      anomalies: config.anomalies,
    });
    this.revocations = new RevocationHandler(source, {
      routes,
      identity: () => this.identity,
      clock: this.clock,
      metrics: this.metrics,
      log: this.log,
      cutOpen: (rule) => this.proxy.cutOpen((route, lease) => cutsExchange(rule, route, lease)),
    }, config.revocations?.failClosedAfter);
    const clientNames: ClientNames = { hosts: new Set(config.clients.hosts), origins: new Set(config.clients.origins) };
    const env: PassEnv = {
      shuttingDown: () => this.shuttingDown,
      route: (name) => routes.get(name),
      now: () => this.clock.monotonicMs(),
      clients: clientNames,
      revocationGate: this.revocations.gate,
    };
    const outcomes = this.outcomes;
    this.proxy = new ProxyServer(env, { requestDone: (o) => outcomes.requestDone(o), upstreamAuthFailure: (r, s, c) => this.upstreamAuthFailure(r, s, c) }, this.log, config.connections.proxy);
    this.admin = new AdminServer({ ready: () => this.readiness(), status: () => this.status(), registry: this.metrics.registry }, config.connections.admin, undefined, clientNames);
  }

  private credentialEvent(route: string, e: CredentialEvent): void {
    if (e.kind === 'acquired' || e.kind === 'rotated') {
      this.labels.grant(route);
      this.health.routeSucceeded(route);
    }
    if (e.kind === 'refresh_failed') this.health.routeFailed(route, e.error);
    this.outcomes.credentialEvent(route, e);
  }

  private identityEvent(e: IdentityEvent): void {
    if (e.kind === 'bootstrapped' || e.kind === 'renewed') this.health.identitySucceeded();
    this.outcomes.identityEvent(e);
    // Leases that failed for want of an identity are tried again now, not after their backoff.
    if (e.kind === 'bootstrapped') for (const r of this.routes.values()) if (!r.provider.current()) void r.provider.refresh();
    if (e.kind === 'failed') {
      // The message carries the authority's reason (e.g. a spent join token), made safe by authority-reason.ts.
      const reason = this.health.identityFailed(e.error);
      this.log.warn({ err: e.error, reason }, 'identity bootstrap/renewal failed');
    }
  }

  /** An upstream 401/403: counted; the route's refresher decides whether it re-acquires (rotation.ts decideAuthFailure). */
  private upstreamAuthFailure(route: RouteRuntime, status: number, credential: HeldCredential | undefined): void {
    this.outcomes.upstreamAuthFailure(route.name, status);
    void this.authFailures.get(route.name)?.onAuthFailure(credential);
  }

  /** The route's credential as audit events name it (lease name, `env:NAME`, …), for usage summaries. */
  credentialLabel(route: string): string | undefined {
    const r = this.routes.get(route);
    return r && this.labels.of(r);
  }

  readiness(): ReadinessReport {
    return this.health.readiness({ started: this.started, shuttingDown: this.shuttingDown }, this.identity);
  }

  status() {
    const routes = this.health.routeStatus();
    return { instance: { id: this.instanceId, identity: this.identity?.identity ?? null }, shuttingDown: this.shuttingDown, revocations: this.revocations.status(), routes };
  }

  /**
   * Bind both listeners, and nothing else. Nothing is spent until both ports are ours: a
   * taken port fails here, before a join token is redeemed or a lease issued (either
   * would be burnt by a process about to exit). Until start() has the credentials, the
   * proxy answers 503 leash_credential_unavailable (no route holds one) and /readyz 503.
   * Idempotent; start() calls it first.
   */
  bind(): Promise<SidecarAddresses> {
    this.bound ??= (async () => {
      const { listen, admin } = this.deps.config;
      const hints = this.deps.listenHints ?? { proxy: 'listen: in the config', admin: 'admin: in the config' };
      const bindOne = (what: 'admin listener' | 'proxy', server: { listen(h: string, p: number): Promise<AddressInfo> }, host: string, port: number, movedBy: string) =>
        server.listen(host, port).catch((err: unknown) => {
          throw new ListenError(listenErrorMessage(err, what, host, port, movedBy), { host, port }, { cause: err });
        });
      const adminAddr = await bindOne('admin listener', this.admin, admin.host, admin.port, hints.admin);
      let proxyAddr: AddressInfo;
      try {
        proxyAddr = await bindOne('proxy', this.proxy, listen.host, listen.port, hints.proxy);
      } catch (err) {
        await this.admin.close();
        throw err;
      }
      return { proxy: proxyAddr, admin: adminAddr };
    })();
    // A failed bind spent nothing: there is nothing for stop() to drain or release.
    this.bound.catch(() => {
      this.shuttingDown = true;
      this.tornDown ??= Promise.resolve();
    });
    return this.bound;
  }

  /**
   * Bind, then subscribe to revocations, bootstrap the identity and take the first
   * leases. Resolves once each has had its first attempt (readiness reports the
   * outcome). If anything throws after the listeners are up, everything held is
   * released before the error goes up; a stop() during the start lets the step under way
   * finish (each is bounded by a timeout), skips the rest and then releases.
   */
  start(): Promise<SidecarAddresses> {
    this.starting ??= this.run();
    return this.starting;
  }

  private async run(): Promise<SidecarAddresses> {
    const addrs = await this.bind();
    try {
      await this.revocations.start();
      if (this.authority && !this.shuttingDown) {
        const { IdentityManager } = await import('./credentials/identity.js');
        const attestor = this.deps.attestor ?? joinTokenAttestor(this.deps.joinToken ?? (() => undefined));
        this.identity = new IdentityManager(this.authority, attestor, this.clock, (e) => this.identityEvent(e), this.rotation);
        await this.identity.start();
      }
      if (!this.shuttingDown) await Promise.all([...this.routes.values()].map((r) => r.provider.start()));
    } catch (err) {
      await (this.tornDown ??= this.teardown());
      throw err;
    }
    if (this.shuttingDown) {
      this.log.info('stopped during start: the credentials taken so far are released');
      return addrs;
    }
    this.started = true;
    const { proxy: proxyAddr, admin: adminAddr } = addrs;
    this.log.info(
      { listen: `${proxyAddr.address}:${proxyAddr.port}`, admin: `${adminAddr.address}:${adminAddr.port}`, routes: [...this.routes.keys()] },
      'leash sidecar started',
    );
    return addrs;
  }

  /**
   * Orderly shutdown (STYLE 11): refuse new work, drain up to the grace, release
   * everything. During a start, waits for the step under way, then releases what it took.
   * Idempotent.
   */
  stop(): Promise<void> {
    this.shuttingDown = true;
    this.stopping ??= (async () => {
      await this.starting?.catch(() => undefined);
      await (this.tornDown ??= this.teardown());
    })();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    this.shuttingDown = true;
    const grace = this.deps.config.shutdown.grace;
    this.log.info({ inFlight: this.proxy.inFlight, graceMs: grace }, 'shutting down: draining');
    await this.proxy.close(grace);
    await this.revocations.close();
    // Providers release their leases, then the identity and its client go.
    await Promise.all([...this.routes.values()].map((r) => r.provider.close()));
    await this.identity?.close();
    this.authority?.close();
    for (const r of this.routes.values()) r.close();
    await this.admin.close();
    this.log.info('leash sidecar stopped');
  }
}
