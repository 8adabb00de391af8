import { request } from 'node:https';
import { createLocalJWKSet, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Clock } from '../core/clock.js';
import { VerifyError } from './errors.js';

/**
 * The authority's JWKS, fetched over HTTPS (TLS always verified, against `ca` when given),
 * kept in memory and refetched:
 * - when a token names a kid the cache does not hold, at most once per minRefetchMs
 *   (concurrent misses share one fetch; tokens with made-up kids cannot make us hammer
 *   the authority);
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

type Outcome = 'fetched' | 'failed' | 'limited';

export class JwksCache {
  private kids = new Set<string>();
  private keySet: JWTVerifyGetKey | undefined;
  private fetchedAtMs = 0;
  private lastAttemptMs = Number.NEGATIVE_INFINITY;
  private lastMissMs = Number.NEGATIVE_INFINITY;
  private inflight: Promise<Outcome> | undefined;
  private lastError: string | undefined;
  /** Fetches attempted (for tests and diagnostics). */
  fetches = 0;

  constructor(private readonly o: JwksOptions) {}

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
    if (why === 'miss' && now - this.lastMissMs < this.o.minRefetchMs) return Promise.resolve('limited');
    if (why === 'stale' && now - this.lastAttemptMs < this.o.minRefetchMs) return Promise.resolve('limited');
    if (why === 'miss') this.lastMissMs = now;
    this.lastAttemptMs = now;
    this.fetches++;
    this.inflight = this.fetchOnce()
      .then(
        (keys): Outcome => {
          this.install(keys);
          this.lastError = undefined;
          return 'fetched';
        },
        (err: unknown): Outcome => {
          this.lastError = (err as Error).message;
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

  private fetchOnce(): Promise<JWK[]> {
    const timeoutMs = this.o.timeoutMs ?? 5_000;
    return new Promise<JWK[]>((resolve, reject) => {
      const req = request(
        this.o.url,
        {
          method: 'GET',
          ...(this.o.ca ? { ca: this.o.ca } : {}),
          rejectUnauthorized: true,
          agent: false,
          headers: { accept: 'application/json' },
          timeout: timeoutMs,
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            return reject(new Error(`HTTP ${res.statusCode}`));
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BYTES) {
              req.destroy(new Error('JWKS larger than 1 MiB'));
              return;
            }
            chunks.push(c);
          });
          res.on('error', reject);
          res.on('end', () => {
            try {
              resolve(usableKeys(JSON.parse(Buffer.concat(chunks).toString('utf8'))));
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      const deadline = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code ? `${err.code}: ${err.message}` : err.message)));
      req.on('close', () => clearTimeout(deadline));
      req.end();
    });
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
