import type { Clock } from '../../core/clock.js';
import { AuthorityCallError } from '../../core/errors.js';
import type { LeaseResponse } from '../../core/protocol.js';
import { DEFAULT_ROTATION, MAX_TIMER_MS, refreshAtMs, retryAtMs, usable, type LeaseTiming, type RotationPolicy } from './rotation.js';
import type { CredentialEvent, CredentialProvider, HeldCredential } from './types.js';
import { LEASE_EXPIRY_GRACE_MS, LEASE_VALUES_KEPT, ValueHistory } from './value-history.js';

/**
 * A credential leased from the authority and kept fresh (DESIGN §6). The decisions are
 * the pure functions in rotation.ts; this is the loop that acts on them:
 * - lease at start; refresh at ½ TTL ± 10 % after the request was sent (monotonic clock,
 *   so a stepped wall clock changes nothing; the send time is conservative by the RTT);
 * - the new credential serves new requests at once; in-flight ones keep the old object;
 * - failure sorting: retryable → keep, back off with full jitter, never past expiry;
 *   refused (401/403/404) → drop at once; malformed → reject, count, keep while valid;
 * - one refresh in flight at a time, shared by every caller (upstream 401s included);
 * - the lease and its predecessor are released on close.
 */
export interface LeaseSource {
  lease(credential: string): Promise<LeaseResponse>;
  release(leaseId: string): Promise<void>;
}

interface Held extends HeldCredential {
  readonly timing: LeaseTiming;
  readonly leaseId: string;
}

export class LeaseCredential implements CredentialProvider {
  readonly description: string;
  private cred: Held | undefined;
  private previous: Held | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closed = false;
  /** This instance was revoked: nothing is leased again (a call under way is discarded, not retried). */
  private cutOff = false;
  private epoch = 0;
  private expiredReported: Held | undefined;
  /** Monotonic ms of the scheduled refresh of `cred` (set when it was received). */
  private refreshDue: number | undefined;
  /** Every value leased, until it expires upstream: revoked or displaced ones included. */
  private readonly history = new ValueHistory(LEASE_VALUES_KEPT, LEASE_EXPIRY_GRACE_MS);
  /** Leases dropped by a revocation or refusal (bounded): never sent again, queued requests included. */
  private readonly dropped = new Set<string>();
  /** Lease ids revoked while not held here (bounded): a lease call under way may bring one back. */
  private readonly forbidden = new Set<string>();

  constructor(
    private readonly credential: string,
    private readonly source: LeaseSource,
    private readonly clock: Clock,
    private readonly onEvent: (e: CredentialEvent) => void,
    private readonly policy: RotationPolicy = DEFAULT_ROTATION,
    private readonly random: () => number = Math.random,
  ) {
    this.description = `lease:${credential}`;
  }

  /** Resolves after the first attempt, successful or not; readiness reports the outcome. */
  async start(): Promise<void> {
    await this.refresh();
  }

  current(): HeldCredential | undefined {
    const c = this.cred;
    if (!c) return undefined;
    if (usable(c, this.clock.monotonicMs())) return c;
    if (this.expiredReported !== c) {
      this.expiredReported = c;
      this.onEvent({ kind: 'expired', fingerprint: c.fingerprint, lease: c.leaseId });
    }
    return undefined;
  }

  stillSendable(cred: HeldCredential, nowMs: number): boolean {
    return usable(cred, nowMs) && (cred.lease === undefined || !(this.dropped.has(cred.lease) || this.forbidden.has(cred.lease)));
  }

  recentValues(): readonly string[] {
    return this.history.values(this.clock.monotonicMs());
  }

  refresh(refused?: HeldCredential): Promise<void> {
    if (this.closed || this.cutOff) return Promise.resolve();
    // Refused after it was replaced (or dropped, which already seeks a new one): stale news.
    if (refused && refused.fingerprint !== this.cred?.fingerprint) return this.inFlight ?? Promise.resolve();
    this.inFlight ??= this.attempt().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** Drop what is held at once (revocation, refusal). */
  drop(reason: string): void {
    // Anything a lease call already under way brings back was issued before this drop:
    // it is discarded (see attempt), so a revoked lease cannot slip back in by a race.
    this.epoch++;
    // Neither lease held goes out again, not even on a request already queued with it: the
    // predecessor is released below, and a revocation may name either.
    for (const held of [this.cred, this.previous]) if (held) remember(this.dropped, held.leaseId, LEASE_VALUES_KEPT);
    if (this.cred) this.onEvent({ kind: 'revoked', fingerprint: this.cred.fingerprint, lease: this.cred.leaseId, reason });
    this.releaseDisplaced(this.cred);
    this.previous = this.cred ?? this.previous;
    this.cred = undefined;
  }

  private releaseDisplaced(incoming: Held | undefined): void {
    const old = this.previous;
    if (incoming && old && old.leaseId !== incoming.leaseId) void this.source.release(old.leaseId).catch(() => undefined);
  }

  /** The credential name this provider leases. */
  get credentialName(): string {
    return this.credential;
  }

  /**
   * When the lease held (usable or not) was due to be refreshed, on the monotonic clock;
   * undefined while none is held. Past it and still held means no replacement came.
   */
  refreshDueAtMs(): number | undefined {
    return this.cred ? this.refreshDue : undefined;
  }

  /** Lease ids held: the one in use and its predecessor. */
  leaseIds(): string[] {
    return [this.cred?.leaseId, this.previous?.leaseId].filter((id): id is string => id !== undefined);
  }

  /**
   * A lease-scope revocation of an id this route does not hold: the answer of a lease call
   * under way (stored at the authority, not yet received) may be exactly that lease.
   */
  forbidLease(leaseId: string): void {
    remember(this.forbidden, leaseId, FORBIDDEN_KEPT);
  }

  /** A revocation: drop at once, and (unless the identity itself is gone) lease anew now. */
  revoke(reason: string, reLease: boolean): Promise<void> {
    this.drop(reason);
    if (!reLease) {
      this.cutOff = true;
      if (this.timer) clearTimeout(this.timer);
      return Promise.resolve();
    }
    // A call under way is discarded when it lands and retried at once (see attempt).
    return this.inFlight ?? this.refresh();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight?.catch(() => undefined);
    // The predecessor was kept for requests in flight; the proxy has drained by now, so
    // release it too rather than leave it live at the authority until it expires.
    const held = [this.cred, this.previous].filter((c): c is Held => c !== undefined);
    this.cred = undefined;
    this.previous = undefined;
    this.history.clear();
    const ids = [...new Set(held.map((c) => c.leaseId))];
    await Promise.all(ids.map((id) => this.source.release(id).catch(() => undefined)));
  }

  private async attempt(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    const sentAt = this.clock.monotonicMs();
    const epoch = this.epoch;
    let lease: LeaseResponse;
    try {
      lease = await this.source.lease(this.credential);
    } catch (err) {
      this.failed(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (epoch !== this.epoch || this.forbidden.has(lease.lease)) {
      // Revoked while this call was under way: the answer may predate the revocation.
      await this.source.release(lease.lease).catch(() => undefined);
      if (!this.closed && !this.cutOff) this.schedule(this.clock.monotonicMs());
      return;
    }
    if (this.closed) {
      await this.source.release(lease.lease).catch(() => undefined);
      return;
    }
    const timing = { receivedAtMs: sentAt, ttlMs: lease.ttlSeconds * 1000 };
    const next: Held = {
      value: lease.value,
      fingerprint: lease.fingerprint,
      acquiredAtMs: sentAt,
      expiresAtMs: sentAt + timing.ttlMs,
      lease: lease.lease,
      leaseId: lease.lease,
      timing,
    };
    const before = this.cred;
    // Only the newest predecessor is kept for requests still in flight; the one it
    // displaces was replaced a whole refresh interval ago, so its record is released now
    // rather than left live at the authority until it expires.
    this.releaseDisplaced(before);
    this.previous = before ?? this.previous;
    this.cred = next;
    this.history.add(next.value, next.expiresAtMs);
    this.failures = 0;
    this.onEvent(
      before
        ? { kind: 'rotated', fingerprint: next.fingerprint, previousFingerprint: before.fingerprint, lease: next.leaseId }
        : { kind: 'acquired', fingerprint: next.fingerprint, lease: next.leaseId },
    );
    // The old lease stays valid upstream until its own expiry; it is not released early,
    // so requests still in flight with it complete.
    this.refreshDue = refreshAtMs(timing, this.random(), this.policy);
    this.schedule(this.refreshDue);
  }

  private failed(error: Error): void {
    if (error instanceof AuthorityCallError && error.kind === 'refused') this.drop(error.message);
    this.onEvent({ kind: 'refresh_failed', error });
    const now = this.clock.monotonicMs();
    const held = this.cred && usable(this.cred, now) ? this.cred.timing : undefined;
    const retryAfterMs = error instanceof AuthorityCallError ? error.retryAfterMs : undefined;
    this.schedule(retryAtMs(held, now, this.failures++, this.random(), this.policy, retryAfterMs));
  }

  private schedule(atMs: number): void {
    if (this.closed || this.cutOff) return;
    if (this.timer) clearTimeout(this.timer);
    // setTimeout takes at most 2^31−1 ms (~24.8 days) and fires after 1 ms for anything
    // longer: a lease of ~62 days or more would be refreshed in a tight loop. Wait in steps.
    const delay = Math.max(0, atMs - this.clock.monotonicMs());
    this.timer = setTimeout(() => (delay > MAX_TIMER_MS ? this.schedule(atMs) : void this.refresh()), Math.min(delay, MAX_TIMER_MS));
    this.timer.unref();
  }
}

/** Lease ids revoked while not held, remembered per route (the oldest forgotten first). */
const FORBIDDEN_KEPT = 1024;

/** Adds `id` to a set bounded at `max` entries, forgetting the oldest. */
function remember(set: Set<string>, id: string, max: number): void {
  set.add(id);
  if (set.size > max) set.delete(set.values().next().value!);
}
