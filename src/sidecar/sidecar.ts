import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { SidecarConfig } from '../config/sidecar.js';
import { type Clock, systemClock } from '../core/clock.js';
import { AuthorityCallError, ConfigError, ListenError } from '../core/errors.js';
import { fingerprint } from '../core/fingerprint.js';
import { listenErrorMessage } from '../core/listen.js';
import { AuthorityClient } from './credentials/authority-client.js';
import type { IdentityEvent, IdentityManager } from './credentials/identity.js';
import { LeaseCredential } from './credentials/lease-credential.js';
import type { Audit } from '../telemetry/audit.js';
import type { UsageRequest } from '../telemetry/usage.js';
import { SidecarMetrics, NO_ROUTE } from '../telemetry/metrics.js';
import { AdminServer } from './admin.js';
import { EnvCredential, FileCredential } from './credentials/static-sources.js';
import { DEFAULT_ROTATION, safetyMarginMs as leaseSafetyMarginMs, type AuthFailurePolicy, type RotationPolicy } from './credentials/rotation.js';
import { AuthFailureRefresher } from './credentials/auth-failure.js';
import type { MemoryRevocationBus } from '../bus/memory.js';
import type { RedisTarget } from '../bus/connect.js';
import type { RevocationSubscriber, SubscriberEvents } from '../bus/types.js';
import type { Revocation } from '../core/protocol.js';
import { decideRevocation } from './revocations.js';
import { decideReadiness, type Readiness } from './readiness.js';
import type { CredentialEvent, CredentialProvider, HeldCredential } from './credentials/types.js';
import type { PassEnv } from './proxy/passes.js';
import { RouteRuntime } from './proxy/route.js';
import { ProxyServer, type RequestOutcome } from './proxy/server.js';
import { AnomalyDetector, type Anomaly } from './anomalies.js';
import { AnomalyMetrics } from '../telemetry/anomaly-metrics.js';
import type { NodeAttestor } from '../core/attestation.js';
import { joinTokenAttestor } from './credentials/attestors/join-token.js';

/**
 * The sidecar: routes with their credentials, the proxy, the admin listener, and the
 * wiring of outcomes to metrics and audit. Receives everything it needs (config,
 * environment, CA files' contents, logger, clock); reads no files or env itself beyond
 * the credential sources it is given.
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
  /** The one-time join token, read by the entry point when bootstrap needs it (used when no attestor is given). */
  joinToken?: () => string | undefined;
  /** How the identity is bootstrapped (src/sidecar/assemble.ts makes it from `authority.bootstrap`). */
  attestor?: NodeAttestor;
  /** `leash dev`: the in-process bus shared with the authority (instead of Redis). */
  revocationBus?: MemoryRevocationBus;
  /** config.revocations.redis with its password read by the entry point. */
  revocationsRedis?: RedisTarget;
  /**
   * What moves each listener, for the bind-error message (e.g. `listen: in FILE`,
   * `LEASH_LISTEN`): only the entry point knows where the address came from.
   */
  listenHints?: { proxy: string; admin: string };
  /** The package version for leash_build_info, read by the entry point. */
  version?: string;
  /** Per-request use, summarised into the audit stream (telemetry/usage-writer.ts); absent without Redis. */
  usage?: { record(r: UsageRequest): void };
}

/** /readyz: the readiness decision plus why things are missing (never a secret: see reasonFor). */
export interface ReadinessReport extends Readiness {
  /** The last failure of the identity (while none is usable) and of each unavailable route. */
  errors: { identity?: string; routes: Record<string, string> };
}

/** Bounded, one line: the text of an error as /readyz shows it. */
const MAX_ERROR_TEXT = 300;
const reasonFor = (err: Error): string => {
  const text = err.message.replace(/[^\x20-\x7e]+/g, ' ');
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 1)}…` : text;
};

export interface SidecarAddresses {
  proxy: AddressInfo;
  admin: AddressInfo;
}

/** DESIGN §6 safety margin for a held credential; none for sources without expiry. */
const safetyMarginMs = (cred: HeldCredential) =>
  cred.expiresAtMs === undefined ? 0 : leaseSafetyMarginMs(cred.expiresAtMs - cred.acquiredAtMs);

export class Sidecar {
  readonly instanceId: string;
  readonly routes = new Map<string, RouteRuntime>();
  readonly metrics: SidecarMetrics;
  private readonly proxy: ProxyServer;
  private readonly anomalies: AnomalyDetector;
  private readonly anomalyMetrics: AnomalyMetrics;
  private readonly admin: AdminServer;
  private readonly clock: Clock;
  private readonly log: Logger;
  private shuttingDown = false;
  private revocations: RevocationSubscriber | undefined;
  /** The channel was not up when leasing began: revocations may have been missed. */
  private reconcileOnUp = false;
  private channelUp = false;
  /** This instance was revoked (DESIGN §7): nothing is leased again, whatever arrives later. */
  private cutOff = false;
  private stopping: Promise<void> | undefined;
  /** start(), once: listeners, then revocations, identity and credentials. */
  private starting: Promise<SidecarAddresses> | undefined;
  private bound: Promise<SidecarAddresses> | undefined;
  /** The release of everything held; run once, by stop() or by a start that failed. */
  private tornDown: Promise<void> | undefined;
  private started = false;
  /** Why each route (and the identity) last failed; cleared when it succeeds. */
  private readonly lastErrors = new Map<string, string>();
  private identityError: string | undefined;
  private readonly rotation: RotationPolicy;
  /** Per route: refreshes after upstream 401/403, bounded (at most one per window, none for a value re-issued unchanged). */
  private readonly authFailures = new Map<string, AuthFailureRefresher>();
  /** Routes whose lease name the authority has granted at least once (see sourceLabel). */
  private readonly granted = new Set<string>();
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
    if (config.authority) {
      if (deps.authorityCa === undefined) throw new ConfigError([`authority.caFile: ${config.authority.caFile} was not loaded`]);
      this.authority = new AuthorityClient(config.authority.url, deps.authorityCa, config.authority.timeout);
    }
    for (const [name, rc] of Object.entries(config.routes)) {
      const provider = this.makeProvider(name, rc.credential);
      const ca = rc.caFile === undefined ? undefined : deps.caFiles.get(rc.caFile);
      // A configured CA that was not loaded must not fall back to the system roots silently.
      if (rc.caFile !== undefined && ca === undefined) throw new ConfigError([`routes.${name}.caFile: ${rc.caFile} was not loaded`]);
      this.routes.set(name, new RouteRuntime(name, rc, provider, ca));
      this.authFailures.set(name, this.makeAuthFailureRefresher(name, provider));
    }
    this.metrics = new SidecarMetrics(() => this.credentialStates(), () => this.identity?.ttlRemainingSeconds(), {
      routes: [...this.routes.keys()],
      version: deps.version ?? 'unknown',
    });
    const an = config.anomalies;
    this.anomalies = new AnomalyDetector(this.clock, {
      learningWindowMs: an.learningWindow,
      clientWindowMs: an.clientWindow,
      authFailureBurst: { count: an.authFailureBurst.count, windowMs: an.authFailureBurst.window },
      maxOperations: 10_000,
      maxClients: 1_000,
    });
    this.anomalyMetrics = new AnomalyMetrics(this.metrics.registry, [...this.routes.keys()], NO_ROUTE);
    const env: PassEnv = {
      shuttingDown: () => this.shuttingDown,
      route: (name) => this.routes.get(name),
      now: () => this.clock.monotonicMs(),
      safetyMarginMs,
    };
    this.proxy = new ProxyServer(env, { requestDone: (o) => this.requestDone(o), upstreamAuthFailure: (r, s, c) => this.upstreamAuthFailure(r, s, c) }, this.log, deps.config.connections.proxy);
    this.admin = new AdminServer({ ready: () => this.readiness(), status: () => this.status(), registry: this.metrics.registry }, deps.config.connections.admin);
  }

  private makeProvider(route: string, source: string | { file: string } | { env: string }): CredentialProvider {
    const onEvent = (e: CredentialEvent) => this.credentialEvent(route, e);
    if (typeof source === 'string') return new LeaseCredential(source, this.authority!, this.clock, onEvent, this.rotation);
    return 'file' in source
      ? new FileCredential(source.file, this.deps.config.credentialFiles.pollInterval, this.clock, onEvent)
      : new EnvCredential(source.env, this.deps.env, this.clock, onEvent);
  }

  private makeAuthFailureRefresher(route: string, provider: CredentialProvider): AuthFailureRefresher {
    const { window, cap } = this.deps.config.rotation.authFailure;
    const policy: AuthFailurePolicy = { windowMs: window, capMs: cap };
    return new AuthFailureRefresher(
      provider,
      this.clock,
      {
        skipped: (reason) => this.metrics.upstreamAuthRefreshSkipped(route, reason),
        // Once per fingerprint: leasing again would only hand back the same refused value.
        refusedValue: (fingerprint) =>
          this.log.warn(
            { route, credential: provider.description, fingerprint },
            'the upstream refuses the credential the authority issues: not refreshing on 401/403 until another value is held',
          ),
        failed: (err) => this.log.warn({ route, err }, 'refresh after upstream auth failure failed'),
      },
      policy,
    );
  }

  private credentialEvent(route: string, e: CredentialEvent): void {
    if (e.kind === 'acquired' || e.kind === 'rotated') {
      this.granted.add(route);
      this.lastErrors.delete(route);
    }
    if (e.kind === 'refresh_failed') this.lastErrors.set(route, reasonFor(e.error));
    const r = this.routes.get(route);
    const base = { instance: this.instanceId, route, credential: r && this.sourceLabel(r) };
    switch (e.kind) {
      case 'acquired':
        this.deps.audit.emit('credential.acquired', { ...base, fingerprint: e.fingerprint, lease: e.lease });
        break;
      case 'rotated':
        this.metrics.credentialRotation(route, 'success');
        this.deps.audit.emit('credential.rotated', { ...base, fingerprint: e.fingerprint, previousFingerprint: e.previousFingerprint, lease: e.lease });
        break;
      case 'refresh_failed':
        this.metrics.credentialRotation(route, e.error instanceof AuthorityCallError && e.error.kind === 'malformed' ? 'rejected' : 'failure');
        this.deps.audit.emit('credential.refresh_failed', { ...base, error: e.error.message });
        break;
      case 'expired':
        this.metrics.credentialExpired(route);
        this.deps.audit.emit('credential.expired', { ...base, fingerprint: e.fingerprint, lease: e.lease });
        break;
      case 'revoked':
        this.deps.audit.emit('credential.revoked', { ...base, fingerprint: e.fingerprint, lease: e.lease, reason: e.reason });
        break;
    }
  }

  private identityEvent(e: IdentityEvent): void {
    switch (e.kind) {
      case 'bootstrapped':
      case 'renewed':
        this.identityError = undefined;
        this.deps.audit.emit(e.kind === 'bootstrapped' ? 'instance.bootstrapped' : 'instance.renewed', { instance: this.instanceId, identity: e.identity });
        // Leases that failed for want of an identity are tried again now, not after their backoff.
        if (e.kind === 'bootstrapped') for (const r of this.routes.values()) if (!r.provider.current()) void r.provider.refresh();
        break;
      case 'failed':
        // The message carries the authority's reason (e.g. a spent join token), made safe by authority-reason.ts.
        this.identityError = reasonFor(e.error);
        this.log.warn({ err: e.error, reason: this.identityError }, 'identity bootstrap/renewal failed');
        break;
      case 'lost':
        this.deps.audit.emit('instance.revoked', { instance: this.instanceId, identity: e.identity, reason: e.reason });
        break;
    }
  }

  /** An upstream 401/403: count it; the route's refresher decides whether it re-acquires (rotation.ts decideAuthFailure). */
  private upstreamAuthFailure(route: RouteRuntime, status: number, credential: HeldCredential | undefined): void {
    this.metrics.upstreamAuthFailure(route.name, status);
    const burst = this.anomalies.authFailure(route.name);
    if (burst) this.anomaly(burst);
    void this.authFailures.get(route.name)?.onAuthFailure(credential);
  }

  private requestDone(o: RequestOutcome): void {
    const route = o.route ?? NO_ROUTE;
    this.metrics.requestFinished(route, o.method, o.status, o.durationMs / 1000);
    const r = o.route === undefined ? undefined : this.routes.get(o.route);
    const found = this.anomalies.request({
      route: o.route,
      // Only forwarded requests are operations; a refused one is request.denied already.
      rule: o.denied ? undefined : o.rule,
      credential: r && !o.denied ? this.sourceLabel(r) : undefined,
      method: o.method,
      remote: o.remote,
    });
    if (found) for (const a of found) this.anomaly(a);
    const fields = {
      instance: this.instanceId,
      route: o.route,
      method: o.method,
      path: o.path,
      status: o.status,
      durationMs: Math.round(o.durationMs * 1000) / 1000,
      fingerprint: o.credential?.fingerprint,
    };
    if (o.denied) {
      this.metrics.requestDenied(route, o.denied.type);
      this.deps.audit.emit('request.denied', { ...fields, reason: o.denied.type });
    } else {
      this.deps.audit.emit('request', fields);
    }
    this.deps.usage?.record({ route: o.route, method: o.method, path: o.path, status: o.status, lease: o.credential?.lease, fingerprint: o.credential?.fingerprint, denied: o.denied?.type });
  }

  /** The route's credential as audit events name it (lease name, `env:NAME`, …), for usage summaries. */
  credentialLabel(route: string): string | undefined {
    const r = this.routes.get(route);
    return r && this.sourceLabel(r);
  }

  /** An anomaly: counted, and audited as `anomaly.<kind>` (an extension of DESIGN §8, docs/anomalies.md). */
  private anomaly(a: Anomaly): void {
    this.anomalyMetrics.anomaly(a.route ?? NO_ROUTE, a.kind);
    const { kind, ...fields } = a;
    this.deps.audit.emit(`anomaly.${kind}`, { instance: this.instanceId, ...fields });
  }

  private credentialStates() {
    const now = this.clock.monotonicMs();
    return [...this.routes.values()].map((r) => {
      const c = r.provider.current();
      const due = r.provider instanceof LeaseCredential ? r.provider.refreshDueAtMs() : undefined;
      return {
        route: r.name,
        refreshOverdue: due !== undefined && now >= due,
        available: c !== undefined && (c.expiresAtMs === undefined || now < c.expiresAtMs - safetyMarginMs(c)),
        ageSeconds: c ? (now - c.acquiredAtMs) / 1000 : undefined,
        ttlRemainingSeconds: c?.expiresAtMs !== undefined ? Math.max(0, (c.expiresAtMs - now) / 1000) : undefined,
      };
    });
  }

  readiness(): ReadinessReport {
    const states = this.credentialStates().map((s) => ({ route: s.route, available: s.available, required: this.routes.get(s.route)!.config.required }));
    const decided = decideReadiness(states, { started: this.started, shuttingDown: this.shuttingDown });
    const routes: Record<string, string> = {};
    for (const name of decided.unavailable) {
      const why = this.lastErrors.get(name);
      if (why !== undefined) routes[name] = why;
    }
    const identity = this.identity && !this.identity.usable() ? this.identityError : undefined;
    return { ...decided, errors: { ...(identity !== undefined ? { identity } : {}), routes } };
  }

  status() {
    const now = this.clock.monotonicMs();
    const routes: Record<string, unknown> = {};
    for (const r of this.routes.values()) {
      const c = r.provider.current();
      routes[r.name] = {
        upstream: r.origin + r.basePath,
        credential: this.sourceLabel(r),
        lease: c?.lease ?? null,
        fingerprint: c?.fingerprint ?? null,
        ageSeconds: c ? Math.round((now - c.acquiredAtMs) / 1000) : null,
        ttlRemainingSeconds: c?.expiresAtMs !== undefined ? Math.max(0, Math.round((c.expiresAtMs - now) / 1000)) : null,
        available: this.credentialStates().find((s) => s.route === r.name)?.available ?? false,
      };
    }
    return { instance: { id: this.instanceId, identity: this.identity?.identity ?? null }, shuttingDown: this.shuttingDown, routes };
  }

  /**
   * A route's credential source as /status (readable by the agent) and audit events show
   * it. A lease name appears once the authority has granted it; until then, since it may be
   * a typo or a secret pasted in as a name, only its fingerprint (`lease:sha256:…`, the
   * same the authority audits an unknown name under).
   */
  private sourceLabel(r: RouteRuntime): string {
    const p = r.provider;
    return p instanceof LeaseCredential && !this.granted.has(r.name) ? `lease:${fingerprint(p.credentialName)}` : p.description;
  }

  private leaseProviders(): Array<{ route: string; provider: LeaseCredential }> {
    const out: Array<{ route: string; provider: LeaseCredential }> = [];
    for (const r of this.routes.values()) if (r.provider instanceof LeaseCredential) out.push({ route: r.name, provider: r.provider });
    return out;
  }

  private applyRevocation(r: Revocation): void {
    const held = this.leaseProviders().map(({ route, provider }) => ({ route, credential: provider.credentialName, leaseIds: provider.leaseIds() }));
    // Once cut off there is no identity to lease with: later revocations change nothing here.
    const action = this.cutOff ? ({ kind: 'none' } as const) : decideRevocation(r, this.identity?.identity, held);
    const reason = `revoked (${r.scope}${r.reason ? `: ${r.reason}` : ''})`;
    if (action.kind === 'cut-off') {
      this.cutOff = true;
      this.identity?.revoke(reason);
      for (const { provider } of this.leaseProviders()) void provider.revoke(reason, false);
    } else if (action.kind === 're-lease') {
      for (const route of action.routes) void (this.routes.get(route)!.provider as LeaseCredential).revoke(reason, true);
    }
    this.metrics.revocationApplied(r.scope, (this.clock.wallMs() - Date.parse(r.at)) / 1000);
    this.log.info({ revocation: r.id, scope: r.scope, target: r.target, by: r.by, action: action.kind }, 'revocation applied');
  }

  /** Revocations may have been missed: every lease is dropped and leased again (the authority refuses revoked ones). */
  private async reconcile(why: string): Promise<void> {
    if (this.cutOff) return;
    this.log.warn({ why }, 'reconciling every lease with the authority');
    await Promise.all(this.leaseProviders().map(({ provider }) => provider.revoke(`reconcile: ${why}`, true)));
  }

  private async startRevocations(): Promise<void> {
    const events: SubscriberEvents = {
      revocation: (r) => this.applyRevocation(r),
      channel: (up) => {
        this.channelUp = up;
        this.metrics.revocationChannel(up);
        if (up && this.reconcileOnUp) {
          this.reconcileOnUp = false;
          void this.reconcile('the revocation channel came up after leasing began');
        }
      },
      gap: (why) => this.reconcile(why === 'reset' ? 'the revocation stream was reset (Redis lost its data)' : 'the revocation stream was trimmed past our position'),
      malformed: (reason) => this.log.warn({ reason }, 'malformed revocation skipped'),
    };
    if (this.deps.revocationBus) this.revocations = this.deps.revocationBus.subscriber(events);
    else if (this.deps.config.revocations) {
      const [{ RedisRevocationSubscriber }, { redisConnector }] = await Promise.all([import('../bus/redis.js'), import('../bus/connect.js')]);
      const target = this.deps.revocationsRedis ?? (this.deps.config.revocations.redis as RedisTarget);
      this.revocations = new RedisRevocationSubscriber({ connect: redisConnector(target), prefix: this.deps.config.revocations.prefix }, events);
    }
    if (!this.revocations) return;
    this.metrics.revocationChannel(false);
    // Subscribe before leasing, so no revocation of a lease we are about to get can fall
    // between. If Redis is unreachable now, start anyway and reconcile once it is back.
    const started = await Promise.race([this.revocations.start().then(() => true, () => false), sleep(5_000).then(() => false)]);
    if (!started || !this.channelUp) {
      this.reconcileOnUp = true;
      this.log.warn('revocation channel not up at start: serving, and reconciling every lease once it is');
    }
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
      await this.startRevocations();
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
    await this.revocations?.close();
    // Providers release their leases, then the identity and its client go.
    await Promise.all([...this.routes.values()].map((r) => r.provider.close()));
    await this.identity?.close();
    this.authority?.close();
    for (const r of this.routes.values()) r.close();
    await this.admin.close();
    this.log.info('leash sidecar stopped');
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
