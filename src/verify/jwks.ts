import { createLocalJWKSet, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../core/clock.js';
import { HttpJsonError, httpJson, type HttpJsonResponse } from '../core/http-json.js';
import { VerifyError } from './errors.js';

/**
 * The authority's JWKS, fetched over HTTPS (TLS always verified, against `ca` when given),
 * kept in memory and refetched:
 * - when a token names a kid the cache does not hold, at most once per minRefetchMs
 *   (concurrent misses share one fetch; tokens with made-up kids cannot make us hammer
 *   the authority); after a refetch that *failed* (the replica answering was restarting),
 *   sooner: 1 s, then doubling up to minRefetchMs, so a blip in the JWKS endpoint does not
 *   refuse every token of a new key for the whole window;
 * - in the background when the cache is older than cacheMs and a token uses it (not
 *   within minRefetchMs of the last attempt, so a dead endpoint is not retried per request).
 * A failed refetch keeps the keys we have (stale is better than nothing: keys leave the
 * JWKS only after their last token expired). Only ES256 P-256 public keys are kept.
 */
export interface JwksOptions {
  url: URL;
  ca: string | undefined;
  cacheMs: number;
  minRefetchMs: number;
  clock: Clock;
  warn: (obj: Record<string, unknown>, msg: string) => void;
  timeoutMs?: number;
}

const MAX_BYTES = 1024 * 1024;
/** The first retry after a failed refetch; doubled per failure in a row, up to minRefetchMs. */
export const FAILED_REFETCH_MS = 1_000;

type Outcome = 'fetched' | 'failed' | 'limited';

export class JwksCache {
  private kids = new Set<string>();
  private keySet: JWTVerifyGetKey | undefined;
  private fetchedAtMs = 0;
  private lastAttemptMs = Number.NEGATIVE_INFINITY;
  private lastMissMs = Number.NEGATIVE_INFINITY;
  /** How long after the last miss refetch the next may run: minRefetchMs after a fetch, less after failures. */
  private missIntervalMs: number;
  /** Refetches that failed in a row. */
  private failures = 0;
  private inflight: Promise<Outcome> | undefined;
  private lastError: string | undefined;
  /** Fetches attempted (for tests and diagnostics). */
  fetches = 0;

  constructor(private readonly o: JwksOptions) {
    this.missIntervalMs = o.minRefetchMs;
  }

  get loaded(): boolean {
    return this.keySet !== undefined;
  }

  /** The key set to verify a token whose header names `kid`, or a VerifyError. */
  async keysFor(kid: string): Promise<JWTVerifyGetKey> {
    if (this.keySet && this.kids.has(kid)) {
      if (this.o.clock.monotonicMs() - this.fetchedAtMs > this.o.cacheMs) void this.refresh('stale');
      return this.keySet;
    }
    const outcome = await this.refresh('miss');
    if (this.keySet && this.kids.has(kid)) return this.keySet;
    if (outcome === 'fetched') throw new VerifyError('LEASH_VERIFY_INVALID', 'token signed with a key the authority does not publish (unknown kid)', { kid: kid.slice(0, 64) });
    if (!this.keySet) {
      throw new VerifyError('LEASH_VERIFY_UNAVAILABLE', `the authority's JWKS cannot be fetched and none is cached${this.lastError ? ` (${this.lastError})` : ''}`);
    }
    throw new VerifyError(
      'LEASH_VERIFY_UNAVAILABLE',
      outcome === 'limited'
        ? 'token names a key id not in the cached JWKS and a refetch is rate-limited; retry later'
        : `token names a key id not in the cached JWKS and the JWKS cannot be refetched (${this.lastError ?? 'error'})`,
      { kid: kid.slice(0, 64) },
    );
  }

  /**
   * Fetch now, unless one runs (joined) or the rate limit says no: a refetch for an unknown
   * kid ('miss') at most once per minRefetchMs, a background refresh ('stale') not within
   * minRefetchMs of any fetch; 'load' (the start-up loop, which has its own backoff) always.
   */
  refresh(why: 'load' | 'miss' | 'stale'): Promise<Outcome> {
    if (this.inflight) return this.inflight;
    const now = this.o.clock.monotonicMs();
    if (why === 'miss' && now - this.lastMissMs < this.missIntervalMs) return Promise.resolve('limited');
    if (why === 'stale' && now - this.lastAttemptMs < this.o.minRefetchMs) return Promise.resolve('limited');
    if (why === 'miss') this.lastMissMs = now;
    this.lastAttemptMs = now;
    this.fetches++;
    this.inflight = this.fetchOnce()
      .then(
        (keys): Outcome => {
          this.install(keys);
          this.lastError = undefined;
          this.failures = 0;
          this.missIntervalMs = this.o.minRefetchMs;
          return 'fetched';
        },
        (err: unknown): Outcome => {
          this.lastError = (err as Error).message;
          this.failures++;
          this.missIntervalMs = Math.min(this.o.minRefetchMs, FAILED_REFETCH_MS * 2 ** Math.min(this.failures - 1, 16));
          this.o.warn({ url: this.o.url.href, err: this.lastError, cached: this.loaded }, 'leash/verify: JWKS fetch failed');
          return 'failed';
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  private install(keys: JWK[]): void {
    this.kids = new Set(keys.map((k) => k.kid!));
    this.keySet = createLocalJWKSet({ keys });
    this.fetchedAtMs = this.o.clock.monotonicMs();
  }

  private async fetchOnce(): Promise<JWK[]> {
    const timeoutMs = this.o.timeoutMs ?? 5_000;
    let res: HttpJsonResponse;
    try {
      res = await httpJson({ method: 'GET', url: this.o.url, tls: { ca: this.o.ca }, timeoutMs, maxBodyBytes: MAX_BYTES });
    } catch (err) {
      if (!(err instanceof HttpJsonError)) throw err;
      // A non-200 is reported by its status, however large its body.
      if (err.status !== undefined && err.status !== 200) throw new Error(`HTTP ${err.status}`);
      if (err.failure === 'too_large') throw new Error('JWKS larger than 1 MiB');
      if (err.failure === 'timeout') throw new Error(`no answer within ${timeoutMs} ms`);
      const cause = err.cause as NodeJS.ErrnoException | undefined;
      throw new Error(cause ? (cause.code ? `${cause.code}: ${cause.message}` : cause.message) : err.message);
    }
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    let doc: unknown;
    try {
      doc = res.json();
    } catch {
      throw new Error('JWKS is not JSON');
    }
    return usableKeys(doc);
  }
}

/**
 * The ES256 signing keys of a JWKS document: EC P-256 public keys with a kid, alg ES256
 * (or none) and use sig (or none). Private members and everything else are dropped; a
 * document without one usable key is an error (it would leave us unable to verify).
 */
export function usableKeys(doc: unknown): JWK[] {
  const keys = (doc as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error('not a JWKS document (no "keys" array)');
  const out: JWK[] = [];
  for (const k of keys as Record<string, unknown>[]) {
    if (!k || typeof k !== 'object') continue;
    if (k.kty !== 'EC' || k.crv !== 'P-256' || typeof k.x !== 'string' || typeof k.y !== 'string') continue;
    if (typeof k.kid !== 'string' || !k.kid) continue;
    if (k.alg !== undefined && k.alg !== 'ES256') continue;
    if (k.use !== undefined && k.use !== 'sig') continue;
    out.push({ kty: 'EC', crv: 'P-256', x: k.x, y: k.y, kid: k.kid, alg: 'ES256', use: 'sig' });
  }
  if (out.length === 0) throw new Error('JWKS holds no ES256 (EC P-256) key');
  return out;
}
