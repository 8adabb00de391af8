/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"): the delay is uniform in [0, min(cap, base·2^attempt)), so a fleet that failed
 * together does not retry together. `random` is injected for tests.
 */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly capMs: number;
}

export function fullJitterDelay(policy: BackoffPolicy, attempt: number, random: number): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random * ceiling);
}
