import { fullJitterDelay, type BackoffPolicy } from '../../core/backoff.js';
import type { HeldCredential } from './types.js';

/**
 * When to refresh a lease (DESIGN §6), as pure functions of the lease's timing on the
 * sidecar's monotonic clock, now, and a random draw — no timers, no I/O (STYLE 4–5;
 * SPIRE pkg/common/rotationutil rotates at half-life ±10 %). The rotator loop that acts
 * on these decisions arrives with the authority client ([2/5]).
 */
export interface LeaseTiming {
  /** Monotonic ms at which the sidecar received the lease. */
  readonly receivedAtMs: number;
  readonly ttlMs: number;
}

export interface RotationPolicy {
  /** Fraction of the TTL after receipt at which to refresh (0.5). */
  readonly refreshFraction: number;
  /** ± fraction of the TTL of jitter around it (0.1). */
  readonly jitterFraction: number;
  readonly backoff: BackoffPolicy;
}

/** The longest delay setTimeout honours; longer ones fire after 1 ms (Node's TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const DEFAULT_ROTATION: RotationPolicy = {
  refreshFraction: 0.5,
  jitterFraction: 0.1,
  backoff: { baseMs: 500, capMs: 30_000 },
};

/**
 * Never inject within this margin of expiry: max(minMs, fraction · TTL). One constant, not
 * a per-provider policy: the proxy checks it again per request (passes.ts takeCredential)
 * and must reach the same verdict as the provider that handed the credential out.
 */
export const SAFETY_MARGIN = { minMs: 5_000, fraction: 0.05 } as const;

export function safetyMarginMs(ttlMs: number): number {
  // For short leases the 5 s floor would eat most of the lease and leave the refresh
  // (at ½ TTL ± 10 %) no time to land before the credential becomes unusable: cap at ¼.
  return Math.min(ttlMs / 4, Math.max(SAFETY_MARGIN.minMs, SAFETY_MARGIN.fraction * ttlMs));
}

/** DESIGN §6: the expiry less the safety margin for a value valid from `fromMs` to `expiresAtMs`. */
const marginStartMs = (fromMs: number, expiresAtMs: number): number => expiresAtMs - safetyMarginMs(expiresAtMs - fromMs);

/** The instant after which the lease must not be injected. */
export function usableUntilMs(lease: LeaseTiming): number {
  return marginStartMs(lease.receivedAtMs, lease.receivedAtMs + lease.ttlMs);
}

/**
 * The instant after which a held credential must not be injected; Infinity for a source
 * without expiry (a file, an environment variable).
 */
export function credentialUsableUntilMs(cred: HeldCredential): number {
  return cred.expiresAtMs === undefined ? Infinity : marginStartMs(cred.acquiredAtMs, cred.expiresAtMs);
}

/**
 * "Is this held credential usable" (DESIGN §6), the one rule every part asks: not within
 * the safety margin of its expiry. The proxy asks per request (fail closed, whatever a
 * provider hands out), LeaseCredential before handing one out, and /readyz, /status and
 * the availability gauge report it.
 */
export function usable(cred: HeldCredential, nowMs: number): boolean {
  return nowMs < credentialUsableUntilMs(cred);
}

/** The scheduled refresh instant: receipt + TTL·(½ ± 10 %), `random` in [0, 1). */
export function refreshAtMs(lease: LeaseTiming, random: number, policy: RotationPolicy = DEFAULT_ROTATION): number {
  const fraction = policy.refreshFraction + (random * 2 - 1) * policy.jitterFraction;
  return lease.receivedAtMs + Math.min(lease.ttlMs * fraction, usableUntilMs(lease) - lease.receivedAtMs);
}

/**
 * After `failures` consecutive failed refreshes, when to try again: full-jitter backoff,
 * no sooner than the authority's `Retry-After` (`retryAfterMs`, itself capped at the
 * backoff's cap: an authority cannot park a sidecar for longer), but never later than the
 * moment the held credential stops being usable, so a retry is always made while
 * something valid is still in hand.
 */
export function retryAtMs(
  lease: LeaseTiming | undefined,
  nowMs: number,
  failures: number,
  random: number,
  policy: RotationPolicy = DEFAULT_ROTATION,
  retryAfterMs?: number,
): number {
  let at = nowMs + fullJitterDelay(policy.backoff, failures, random);
  if (retryAfterMs !== undefined && retryAfterMs > 0) at = Math.max(at, nowMs + Math.min(retryAfterMs, policy.backoff.capMs));
  if (!lease) return at;
  const deadline = usableUntilMs(lease);
  return deadline > nowMs ? Math.min(at, deadline) : at;
}

/** Whether a lease (the identity certificate's) may still be used now. */
export function isUsable(lease: LeaseTiming, nowMs: number): boolean {
  return nowMs < usableUntilMs(lease);
}

/**
 * Refresh after an upstream 401/403, bounded (DESIGN §6). Without a bound every refused
 * request leased again: a static credential the upstream refuses came back with the same
 * value, was refused again and leased again, ~100 leases a second per agent (and as many
 * audit events). The decision is a pure function of what the route remembers, the
 * credential refused, the one held and now; the loop that acts on it is
 * auth-failure.ts.
 */
export interface AuthFailurePolicy {
  /** Least time between two refreshes a route starts for upstream auth failures. */
  readonly windowMs: number;
  /** The window doubles for each refresh whose result the upstream refuses again, up to this. */
  readonly capMs: number;
}

export const DEFAULT_AUTH_FAILURE: AuthFailurePolicy = { windowMs: 30_000, capMs: 600_000 };

/** What a route remembers about its refreshes after upstream auth failures. */
export interface AuthFailureState {
  /** Monotonic ms at which the last such refresh started; undefined before the first. */
  readonly lastAtMs: number | undefined;
  /** The fingerprint the last such refresh left held (undefined while it runs, or if it left nothing). */
  readonly brought: string | undefined;
  /** Consecutive refreshes that were each refused again right after (the window's exponent). */
  readonly streak: number;
  /**
   * A fingerprint the source handed out again when asked to replace it: the upstream
   * refuses what the authority issues, so asking again is futile until another value is held.
   */
  readonly futile: string | undefined;
}

export const INITIAL_AUTH_FAILURE: AuthFailureState = { lastAtMs: undefined, brought: undefined, streak: 0, futile: undefined };

export type AuthFailureSkip = 'stale' | 'coalesced' | 'window' | 'refused-value';

export type AuthFailureDecision =
  | { readonly refresh: true; readonly state: AuthFailureState }
  | { readonly refresh: false; readonly reason: AuthFailureSkip; readonly state: AuthFailureState };

/** The least gap after a refresh that was the `streak`-th in a row refused again: window·2^streak, capped. */
export function authFailureWindowMs(streak: number, policy: AuthFailurePolicy = DEFAULT_AUTH_FAILURE): number {
  return Math.min(policy.capMs, policy.windowMs * 2 ** Math.min(streak, 30));
}

/**
 * An upstream refused `refused` (a fingerprint) while `held` is what the route holds now
 * and `inFlight` says whether a refresh for an auth failure is already under way:
 * - a credential no longer held (already replaced, or dropped and being re-acquired) → stale;
 * - a refresh under way → coalesced (it answers this failure too);
 * - the held value was re-issued unchanged when it was refused before → refused-value:
 *   nothing until another value is held (a scheduled rotation, a changed file);
 * - less than the window since the last refresh → window. The window is the base one,
 *   doubled for each consecutive refresh whose result was refused again (the held
 *   credential is the one the last refresh brought); a different credential held resets
 *   the growth, never the base window: at most one refresh per route per window.
 */
export function decideAuthFailure(
  state: AuthFailureState,
  refused: string,
  held: string | undefined,
  inFlight: boolean,
  nowMs: number,
  policy: AuthFailurePolicy = DEFAULT_AUTH_FAILURE,
): AuthFailureDecision {
  // Another value held since: the earlier futility says nothing about it.
  const current = held !== undefined && state.futile !== undefined && state.futile !== held ? { ...state, futile: undefined } : state;
  if (held === undefined || refused !== held) return { refresh: false, reason: 'stale', state: current };
  if (inFlight) return { refresh: false, reason: 'coalesced', state: current };
  if (current.futile === held) return { refresh: false, reason: 'refused-value', state: current };
  const again = current.brought !== undefined && current.brought === held;
  const gapMs = again ? authFailureWindowMs(current.streak, policy) : policy.windowMs;
  if (current.lastAtMs !== undefined && nowMs - current.lastAtMs < gapMs) return { refresh: false, reason: 'window', state: current };
  return { refresh: true, state: { ...current, lastAtMs: nowMs, brought: undefined, streak: again ? current.streak + 1 : 0 } };
}

/**
 * After that refresh: `after` is what the route holds now. A fresh credential (another
 * lease, or a re-read source) with the refused fingerprint means the source issues the
 * very value the upstream refuses: `futile` is set (`newlyFutile` once, to report it).
 * A failed refresh that kept the old lease is not fresh: the window (and its growth)
 * bounds the next try instead.
 */
export function settleAuthFailure(
  state: AuthFailureState,
  refused: { readonly fingerprint: string; readonly lease: string | undefined },
  after: { readonly fingerprint: string; readonly lease: string | undefined } | undefined,
): { state: AuthFailureState; newlyFutile: boolean } {
  if (!after) return { state: { ...state, brought: undefined }, newlyFutile: false };
  const fresh = after.lease === undefined || after.lease !== refused.lease;
  const futile = fresh && after.fingerprint === refused.fingerprint;
  return {
    state: { ...state, brought: after.fingerprint, futile: futile ? after.fingerprint : state.futile },
    newlyFutile: futile && state.futile !== after.fingerprint,
  };
}
