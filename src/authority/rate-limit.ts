/**
 * Per-identity token buckets for lease requests (docs/authority.md, "Rate limits"): each
 * identity may lease `burst` credentials at once and `perMinute` a minute after that. A
 * sidecar leases once per route at start and about twice per TTL after, so a fleet that
 * works normally never meets the limit; what meets it is a loop (an upstream answering
 * every credential with 401, a client retrying without backoff) or a stolen identity
 * draining an issuer (an OAuth2 token endpoint's own quota, an exec command, the store).
 *
 * Pure over the injected monotonic clock (STYLE: decisions apart from I/O). Bounded: at
 * most `maxKeys` identities are tracked, the least recently seen forgotten first (a
 * forgotten identity starts again with a full bucket; identities are bootstrapped one by
 * one, so an attacker cannot cheaply mint enough of them to matter).
 */
export interface LeaseRateLimit {
  /** Sustained lease requests a minute, per identity; 0: no limit. */
  readonly perMinute: number;
  /** Requests an identity may make at once (the bucket's size). */
  readonly burst: number;
}

export type RateDecision =
  | { readonly allowed: true }
  /** `first`: the first refusal since this identity's last allowed request (what is worth an audit event). */
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
    private readonly limit: LeaseRateLimit,
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

  /** Identities tracked now (for tests and the bound). */
  get size(): number {
    return this.buckets.size;
  }
}
