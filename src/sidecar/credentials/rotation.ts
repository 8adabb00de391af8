import { fullJitterDelay, type BackoffPolicy } from '../../core/backoff.js';

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
  /** Never inject within this margin of expiry: max(minMs, fraction · TTL). */
  readonly safetyMargin: { readonly minMs: number; readonly fraction: number };
  readonly backoff: BackoffPolicy;
}

export const DEFAULT_ROTATION: RotationPolicy = {
  refreshFraction: 0.5,
  jitterFraction: 0.1,
  safetyMargin: { minMs: 5_000, fraction: 0.05 },
  backoff: { baseMs: 500, capMs: 30_000 },
};

export function safetyMarginMs(ttlMs: number, policy: RotationPolicy = DEFAULT_ROTATION): number {
  // For short leases the 5 s floor would eat most of the lease and leave the refresh
  // (at ½ TTL ± 10 %) no time to land before the credential becomes unusable: cap at ¼.
  return Math.min(ttlMs / 4, Math.max(policy.safetyMargin.minMs, policy.safetyMargin.fraction * ttlMs));
}

/** The instant after which the credential must not be injected. */
export function usableUntilMs(lease: LeaseTiming, policy: RotationPolicy = DEFAULT_ROTATION): number {
  return lease.receivedAtMs + lease.ttlMs - safetyMarginMs(lease.ttlMs, policy);
}

/** The scheduled refresh instant: receipt + TTL·(½ ± 10 %), `random` in [0, 1). */
export function refreshAtMs(lease: LeaseTiming, random: number, policy: RotationPolicy = DEFAULT_ROTATION): number {
  const fraction = policy.refreshFraction + (random * 2 - 1) * policy.jitterFraction;
  return lease.receivedAtMs + Math.min(lease.ttlMs * fraction, usableUntilMs(lease, policy) - lease.receivedAtMs);
}

/**
 * After `failures` consecutive failed refreshes, when to try again: full-jitter backoff,
 * but never later than the moment the held credential stops being usable, so a retry
 * is always made while something valid is still in hand.
 */
export function retryAtMs(
  lease: LeaseTiming | undefined,
  nowMs: number,
  failures: number,
  random: number,
  policy: RotationPolicy = DEFAULT_ROTATION,
): number {
  const at = nowMs + fullJitterDelay(policy.backoff, failures, random);
  if (!lease) return at;
  const deadline = usableUntilMs(lease, policy);
  return deadline > nowMs ? Math.min(at, deadline) : at;
}

/** Whether a held lease may still be injected now. */
export function isUsable(lease: LeaseTiming, nowMs: number, policy: RotationPolicy = DEFAULT_ROTATION): boolean {
  return nowMs < usableUntilMs(lease, policy);
}
