/**
 * A token bucket on a monotonic clock, pure: `burst` tokens at most, refilled at
 * `perMinute`. Used for the audit stream's per-writer budget (telemetry/audit.ts,
 * usage-writer.ts) and the authority's request rate limits (authority/rate-limit.ts).
 */
export interface BucketLimit {
  readonly burst: number;
  readonly perMinute: number;
}

/** A bucket's state: `tokens` as of `atMs`. */
export interface TokenBucket {
  readonly tokens: number;
  readonly atMs: number;
}

/** Refill to `nowMs` and take one token if there is one (pure). */
export function takeToken(bucket: TokenBucket, nowMs: number, limit: BucketLimit): { ok: boolean; bucket: TokenBucket } {
  const tokens = Math.min(limit.burst, bucket.tokens + (Math.max(0, nowMs - bucket.atMs) * limit.perMinute) / 60_000);
  return tokens >= 1 ? { ok: true, bucket: { tokens: tokens - 1, atMs: nowMs } } : { ok: false, bucket: { tokens, atMs: Math.max(nowMs, bucket.atMs) } };
}

/** How long until the bucket holds a whole token again. */
export function msUntilToken(bucket: TokenBucket, limit: BucketLimit): number {
  return Math.max(0, Math.ceil(((1 - bucket.tokens) * 60_000) / limit.perMinute));
}
