/**
 * Token buckets by key (docs/authority.md, "Rate limits"): each key may make `burst`
 * requests at once and `perMinute` a minute after that. The authority keys lease requests
 * by identity (a sidecar leases once per route at start and about twice per TTL after, so
 * what meets the limit is a loop or a stolen identity draining an issuer) and bootstrap
 * requests by client address (before any evidence is checked or spent).
 *
 * Pure over the injected monotonic clock (STYLE: decisions apart from I/O). Bounded: at
 * most `maxKeys` keys are tracked, the least recently seen forgotten first (a forgotten
 * key starts again with a full bucket).
 */
import { msUntilToken, takeToken, type BucketLimit, type TokenBucket } from '../core/token-bucket.js';

/** `perMinute` sustained requests per key (0: no limit), `burst` at once. */
export type RateLimit = BucketLimit;

export type RateDecision =
  | { readonly allowed: true }
  /** `first`: the first refusal since this key's last allowed request (what is worth an audit event or a log line). */
  | { readonly allowed: false; readonly retryAfterSeconds: number; readonly first: boolean };

interface KeyState {
  bucket: TokenBucket;
  refusing: boolean;
}

const ALLOWED: RateDecision = { allowed: true };

export class KeyedRateLimiter {
  private readonly keys = new Map<string, KeyState>();

  constructor(
    private readonly limit: RateLimit,
    private readonly nowMs: () => number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one request from `key`'s bucket (core/token-bucket.ts), or says how long until one is there. */
  take(key: string): RateDecision {
    if (this.limit.perMinute <= 0) return ALLOWED;
    const now = this.nowMs();
    let k = this.keys.get(key);
    if (k === undefined) {
      k = { bucket: { tokens: this.limit.burst, atMs: now }, refusing: false };
      if (this.keys.size >= this.maxKeys) this.keys.delete(this.keys.keys().next().value!);
    } else {
      // Moved to the end: Map order is then least recently seen first.
      this.keys.delete(key);
    }
    this.keys.set(key, k);
    const t = takeToken(k.bucket, now, this.limit);
    k.bucket = t.bucket;
    if (t.ok) {
      k.refusing = false;
      return ALLOWED;
    }
    const first = !k.refusing;
    k.refusing = true;
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(msUntilToken(t.bucket, this.limit) / 1000)), first };
  }

  /** Keys tracked now (for tests and the bound). */
  get size(): number {
    return this.keys.size;
  }
}
