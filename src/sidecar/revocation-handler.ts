import type { Logger } from 'pino';
import { redisTargetFrom, type RedisTarget } from '../bus/target.js';
import type { MemoryRevocationBus } from '../bus/memory.js';
import type { RevocationSubscriber, SubscriberEvents } from '../bus/types.js';
import type { Revocation } from '../core/protocol.js';
import type { RedisTargetConfig, SecretSource } from '../config/common.js';
import type { Clock } from '../core/clock.js';
import { ConfigError } from '../core/errors.js';
import type { SidecarMetrics } from '../telemetry/metrics.js';
import type { IdentityManager } from './credentials/identity.js';
import type { LeaseCredential } from './credentials/lease-credential.js';
import type { RouteRuntime } from './proxy/route.js';
import { decideRevocation, exchangesToCut, type CutRule } from './revocations.js';
import { leaseProviders } from './routes.js';

/**
 * Revocations applied to this sidecar (DESIGN §7): subscribes before the first lease,
 * acts on each revocation as revocations.ts decides, and reconciles every lease when some
 * may have been missed (channel down at start, stream trimmed or reset). An instance cut
 * off stays cut off.
 */
export type RevocationSource = { bus: MemoryRevocationBus } | { redis: RedisTarget; prefix: string };

export interface RevocationTargets {
  routes: ReadonlyMap<string, RouteRuntime>;
  /** The identity, once start() has made it. */
  identity(): IdentityManager | undefined;
  clock: Clock;
  metrics: SidecarMetrics;
  log: Logger;
  /** Ends the open exchanges (requests, streams, WebSockets) a rule names; how many it ended. */
  cutOpen?(rule: CutRule): number;
}

/** How long start() waits for the channel before serving anyway (and reconciling once it is up). */
const CHANNEL_START_WAIT_MS = 5_000;

/**
 * `revocations.failClosedAfter`: once the channel has been down that long, leased routes
 * refuse requests (passes.ts takeCredential) until it is back and caught up. Read per
 * request: one property.
 */
export interface RevocationGate {
  closed: boolean;
  /** For the refusal's message: how long the channel has been down, in seconds. */
  downSeconds(): number;
}

export class RevocationHandler {
  private subscriber: RevocationSubscriber | undefined;
  /** The channel was not up when leasing began: revocations may have been missed. */
  private reconcileOnUp = false;
  private channelUp = false;
  /** Monotonic ms at which the channel went down after having been up (undefined while up, or before it first came up). */
  private downSinceMs: number | undefined;
  private everUp = false;
  /** close() has begun: the channel going down now is ours, not news (no warning, no gate). */
  private closing = false;
  /** This instance was revoked: nothing is leased again, whatever arrives later. */
  private cutOff = false;
  /** Monotonic ms since which the channel has not been up (start included), for the gate. */
  private notUpSinceMs: number | undefined;
  private gateTimer: NodeJS.Timeout | undefined;
  /** Closed while the channel has been down longer than failClosedAfter; undefined when that is not set. */
  readonly gate: RevocationGate | undefined;

  constructor(
    private readonly source: RevocationSource | undefined,
    private readonly t: RevocationTargets,
    private readonly failClosedAfterMs?: number,
  ) {
    this.gate =
      source && failClosedAfterMs !== undefined
        ? { closed: false, downSeconds: () => (this.notUpSinceMs === undefined ? 0 : Math.round((this.t.clock.monotonicMs() - this.notUpSinceMs) / 1000)) }
        : undefined;
  }

  /** Subscribe, before leasing, so no revocation of a lease about to be taken can fall between. */
  async start(): Promise<void> {
    const events: SubscriberEvents = {
      revocation: (r) => this.apply(r),
      channel: (up) => {
        this.channelUp = up;
        this.t.metrics.revocationChannel(up);
        if (this.closing) return;
        this.noteChannel(up);
        this.watchGate(up);
        if (up && this.reconcileOnUp) {
          this.reconcileOnUp = false;
          void this.reconcile('the revocation channel came up after leasing began');
        }
      },
      gap: (why) => this.reconcile(why === 'reset' ? 'the revocation stream was reset (Redis lost its data)' : 'the revocation stream was trimmed past our position'),
      malformed: (reason) => {
        this.t.metrics.revocationMalformed();
        this.t.log.warn({ reason }, 'malformed revocation skipped');
      },
      exposed: () =>
        this.t.log.warn(
          "revocations.redis: this sidecar's Redis user can read the authority's own records (leases, join tokens, revocation marks); anyone with its password, the agent sharing this pod included, could tamper with them: give sidecars a user of their own (docs/revocation.md, \"A Redis user for sidecars\")",
        ),
    };
    const source = this.source;
    if (!source) return;
    if ('bus' in source) this.subscriber = source.bus.subscriber(events);
    else {
      const [{ RedisRevocationSubscriber }, { redisConnector }] = await Promise.all([import('../bus/redis.js'), import('../bus/connect.js')]);
      this.subscriber = new RedisRevocationSubscriber({ connect: redisConnector(source.redis), prefix: source.prefix }, events);
    }
    this.t.metrics.revocationChannel(false);
    if (!this.channelUp) this.watchGate(false);
    // If Redis is unreachable now, start anyway and reconcile once it is back.
    const started = await Promise.race([this.subscriber.start().then(() => true, () => false), sleep(CHANNEL_START_WAIT_MS).then(() => false)]);
    if (!started || !this.channelUp) {
      this.reconcileOnUp = true;
      this.t.log.warn('revocation channel not up at start: serving, and reconciling every lease once it is');
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.gateTimer) clearTimeout(this.gateTimer);
    this.gateTimer = undefined;
    await this.subscriber?.close();
  }

  /**
   * The fail-closed gate: down → a timer for failClosedAfter (from when the channel was last
   * up, or from start); it fires with the channel still down → closed; up (caught up from the
   * stream: the subscriber says up only then) → open.
   */
  private watchGate(up: boolean): void {
    const gate = this.gate;
    if (!gate) return;
    if (up) {
      this.notUpSinceMs = undefined;
      if (this.gateTimer) clearTimeout(this.gateTimer);
      this.gateTimer = undefined;
      if (gate.closed) {
        gate.closed = false;
        this.t.log.info('revocation channel back: leased routes forward again (revocations.failClosedAfter)');
      }
      return;
    }
    if (this.notUpSinceMs !== undefined) return; // already watching
    this.notUpSinceMs = this.t.clock.monotonicMs();
    this.gateTimer = setTimeout(() => {
      this.gateTimer = undefined;
      if (this.channelUp) return;
      gate.closed = true;
      this.t.log.error(
        { downSeconds: gate.downSeconds() },
        'revocation channel down longer than revocations.failClosedAfter: leased routes refuse requests (503) until it is back, as revocations may be missed',
      );
    }, this.failClosedAfterMs);
    this.gateTimer.unref();
  }

  /**
   * /status: whether revocations are arriving, and for how long they have not been. Null
   * without a revocation channel. (While down, leases are still used until they expire;
   * what was missed is read from the stream once it is back.)
   */
  status(): { channel: 'up' | 'down'; downSeconds: number | null } | null {
    if (!this.source) return null;
    if (this.channelUp) return { channel: 'up', downSeconds: null };
    const since = this.downSinceMs;
    return { channel: 'down', downSeconds: since === undefined ? null : Math.round((this.t.clock.monotonicMs() - since) / 1000) };
  }

  /** One line per change after the first time up (a start without it is logged by start()); the gauge alone was easy to miss. */
  private noteChannel(up: boolean): void {
    const now = this.t.clock.monotonicMs();
    if (up) {
      if (this.downSinceMs !== undefined) this.t.log.info({ downSeconds: Math.round((now - this.downSinceMs) / 100) / 10 }, 'revocation channel up again: caught up from the stream');
      this.downSinceMs = undefined;
      this.everUp = true;
    } else if (this.everUp && this.downSinceMs === undefined) {
      this.downSinceMs = now;
      this.t.log.warn('revocation channel down: revocations published meanwhile are applied once it is back (read from the stream); until then the leases held are used until they expire');
    }
  }

  private apply(r: Revocation): void {
    const leased = leaseProviders(this.t.routes);
    const identity = this.t.identity();
    const held = leased.map(({ route, provider }) => ({ route, credential: provider.credentialName, leaseIds: provider.leaseIds() }));
    // Once cut off there is no identity to lease with: later revocations change nothing here.
    const action = this.cutOff ? ({ kind: 'none' } as const) : decideRevocation(r, identity?.identity, held);
    const reason = `revoked (${r.notUnderstood ? `${r.notUnderstood.scope}, not understood` : r.scope}${r.reason ? `: ${r.reason}` : ''})`;
    // A newer authority's revocation this version cannot read: taken as `all` (every lease
    // dropped and leased again; the authority, which understands it, refuses what it covers).
    if (r.notUnderstood) {
      this.t.log.error(
        { revocation: r.id, scope: r.notUnderstood.scope, target: r.notUnderstood.target, by: r.by },
        'revocation not understood (written by a newer leash): every lease is dropped and leased again (docs/revocation.md, "Across versions")',
      );
    }
    if (action.kind === 'cut-off') {
      this.cutOff = true;
      identity?.revoke(reason);
      for (const { provider } of leased) void provider.revoke(reason, false);
    } else if (action.kind === 're-lease') {
      for (const route of action.routes) void (this.t.routes.get(route)!.provider as LeaseCredential).revoke(reason, true);
    }
    // A lease id held nowhere here may still be on its way: a lease call under way can bring
    // it back after this revocation was applied. Every route refuses it if it does.
    if (r.scope === 'lease') for (const { provider } of leased) provider.forbidLease(r.target);
    // What is already open with a revoked lease is ended too: a stream or a WebSocket would
    // otherwise keep using the upstream session that lease opened for as long as it lasts.
    const cut = this.t.cutOpen?.(exchangesToCut(r, action, leased.map(({ route }) => route))) ?? 0;
    if (cut > 0) this.t.log.warn({ revocation: r.id, scope: r.scope, cut }, 'open requests, streams and WebSockets sent with a revoked lease ended');
    this.t.metrics.revocationApplied(r.notUnderstood ? 'unknown' : r.scope, (this.t.clock.wallMs() - Date.parse(r.at)) / 1000);
    this.t.log.info({ revocation: r.id, scope: r.scope, target: r.target, by: r.by, action: action.kind }, 'revocation applied');
  }

  /** Revocations may have been missed: every lease is dropped and leased again (the authority refuses revoked ones). */
  private async reconcile(why: string): Promise<void> {
    if (this.cutOff) return;
    this.t.log.warn({ why }, 'reconciling every lease with the authority');
    await Promise.all(leaseProviders(this.t.routes).map(({ provider }) => provider.revoke(`reconcile: ${why}`, true)));
  }
}

/**
 * Where revocations come from: `leash dev`'s in-process bus, else config.revocations with
 * its Redis target as the entry point resolved it (`resolved`, password read), else as the
 * config gives it. An embedder may construct the sidecar from a parsed config alone: a URL
 * or a Sentinel/Cluster without a password needs nothing read; a password from the
 * environment is taken from `env` (the environment the sidecar was given); a password
 * file is for the entry point to read (the sidecar reads no files beyond its credential
 * sources). Anything that cannot be resolved is a ConfigError at construction, never a
 * connection made without its password.
 */
export function revocationSource(
  config: { redis: RedisTargetConfig; prefix: string } | undefined,
  bus: MemoryRevocationBus | undefined,
  resolved: RedisTarget | undefined,
  env: Readonly<Record<string, string | undefined>>,
): RevocationSource | undefined {
  if (bus) return { bus };
  if (!config) return undefined;
  return { redis: resolved ?? redisTargetOf(config.redis, env), prefix: config.prefix };
}

const redisTargetOf = (target: RedisTargetConfig, env: Readonly<Record<string, string | undefined>>): RedisTarget =>
  redisTargetFrom(target, (source) => passwordOf(source, env));

function passwordOf(source: SecretSource, env: Readonly<Record<string, string | undefined>>): string {
  if ('file' in source) throw new ConfigError([`revocations.redis.password: ${source.file} was not read (the entry point reads it and passes the target as revocationsRedis)`]);
  const value = env[source.env];
  if (value === undefined) throw new ConfigError([`revocations.redis.password: environment variable ${source.env} is not set`]);
  return value;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
