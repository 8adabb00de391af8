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
export interface RateLimit {
  /** Sustained requests a minute, per key; 0: no limit. */
  readonly perMinute: number;
  /** Requests a key may make at once (the bucket's size). */
  readonly burst: number;
}

export type RateDecision =
  | { readonly allowed: true }
  /** `first`: the first refusal since this key's last allowed request (what is worth an audit event or a log line). */
  | { readonly allowed: false; readonly retryAfterSeconds: number; readonly first: boolean };

interface Bucket {
  tokens: number;
  atMs: number;
  refusing: boolean;
}

const ALLOWED: RateDecision = { allowed: true };

export class KeyedRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    private readonly limit: RateLimit,
    private readonly nowMs: () => number,
    private readonly maxKeys = 10_000,
  ) {
    this.perMs = limit.perMinute / 60_000;
  }

  /** Takes one request from `key`'s bucket, or says how long until one is there. */
  take(key: string): RateDecision {
    if (this.limit.perMinute <= 0) return ALLOWED;
    const now = this.nowMs();
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.limit.burst, atMs: now, refusing: false };
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    } else {
      // Refill since last seen (a clock that does not advance refills nothing), and move
      // the key to the end: Map order is then least recently seen first.
      b.tokens = Math.min(this.limit.burst, b.tokens + Math.max(0, now - b.atMs) * this.perMs);
      b.atMs = now;
      this.buckets.delete(key);
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      b.refusing = false;
      return ALLOWED;
    }
    const first = !b.refusing;
    b.refusing = true;
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000)), first };
  }

  /** Keys tracked now (for tests and the bound). */
  get size(): number {
    return this.buckets.size;
  }
}
