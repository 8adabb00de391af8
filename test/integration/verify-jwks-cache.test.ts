import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { VerifyError } from '../../src/verify/errors.js';
import { JwksCache, usableKeys } from '../../src/verify/jwks.js';

/**
 * The verifier's JWKS cache on its own (src/verify/jwks.ts), against a real HTTP server on
 * port 0 and a clock the tests move by hand: which keys of a document are kept, how each
 * kind of failed fetch is refused and reported, and the refetch rate limits of
 * docs/verify.md ("JWKS: caching and rate limits").
 */

/** A monotonic clock that only moves when a test says so; starts far from 0 so that `now + x` is never mistaken for `now - x`. */
class HandClock implements Clock {
  t = 1_000_000;
  monotonicMs(): number {
    return this.t;
  }
  wallMs(): number {
    return this.t;
  }
}

type Answer = (req: http.IncomingMessage, res: http.ServerResponse) => void;

interface JwksServer {
  url: URL;
  /** What the next request gets. */
  answer: Answer;
  hits: number;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function jwksServer(answer: Answer): Promise<JwksServer> {
  const s: JwksServer = { url: new URL('http://127.0.0.1/'), answer, hits: 0 };
  const server = http.createServer((req, res) => {
    s.hits++;
    s.answer(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  s.url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`);
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return s;
}

const json =
  (doc: unknown, status = 200): Answer =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  };

async function signingKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid };
  const sign = () => new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid }).sign(privateKey);
  return { jwk, sign };
}

function cache(url: URL, clock: Clock, o: { cacheMs?: number; minRefetchMs?: number; timeoutMs?: number } = {}): JwksCache {
  return new JwksCache({
    url,
    ca: undefined,
    cacheMs: o.cacheMs ?? 600_000,
    minRefetchMs: o.minRefetchMs ?? 30_000,
    timeoutMs: o.timeoutMs,
    clock,
    warn: () => {},
  });
}

/** The VerifyError a promise rejects with (anything else, or no rejection, fails the test). */
async function refusal(p: Promise<unknown>): Promise<VerifyError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof VerifyError) return err;
    throw err;
  }
  throw new Error('expected a VerifyError, the promise resolved');
}

describe('usableKeys: only ES256 EC P-256 public keys with a kid are kept', () => {
  it('drops every other entry next to good keys, and strips private members', async () => {
    const { jwk } = await signingKey('good');
    const good = { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: 'good' }; // no alg, no use: kept
    const doc = {
      keys: [
        null, // must not throw (a null entry would otherwise abort the whole document)
        'not a key',
        42,
        good,
        { ...good, kid: 'explicit', alg: 'ES256', use: 'sig' },
        { ...good, kid: 'private', d: 'c2VjcmV0' },
        // Each of these differs from `good` in one member only.
        { ...good, kid: 'rsa', kty: 'RSA' },
        { ...good, kid: 'p384', crv: 'P-384' },
        { ...good, kid: 'x-number', x: 1 },
        { ...good, kid: 'y-number', y: 1 },
        { ...good, kid: 'rs256', alg: 'RS256' },
        { ...good, kid: 'enc', use: 'enc' },
        { ...good, kid: '' },
        { ...good, kid: 5 },
        { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, // no kid
      ],
    };
    const kept = usableKeys(doc);
    expect(kept.map((k) => k.kid)).toEqual(['good', 'explicit', 'private']);
    for (const k of kept) expect(k).toEqual({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: k.kid, alg: 'ES256', use: 'sig' });
  });

  it('a document without one usable key is an error, not an empty key set', () => {
    expect(() => usableKeys({ keys: [{ kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'rsa' }] })).toThrow();
    expect(() => usableKeys({ keys: [] })).toThrow();
  });
});

describe('JwksCache: fetching', () => {
  it('a good key next to unusable ones verifies tokens; the unusable kids are unknown (INVALID after a refetch)', async () => {
    const good = await signingKey('good');
    const rsaLike = await signingKey('rsa');
    const srv = await jwksServer(json({ keys: [{ ...rsaLike.jwk, kty: 'RSA' }, good.jwk, { ...good.jwk, kid: 'hs', alg: 'HS256' }] }));
    const c = cache(srv.url, new HandClock());
    expect(c.loaded).toBe(false);
    expect(await c.refresh('load')).toBe('fetched');
    expect(c.loaded).toBe(true);
    expect(c.fetches).toBe(1);
    const { payload } = await jwtVerify(await good.sign(), await c.keysFor('good'));
    expect(payload.sub).toBe('x');
    // Unknown to the cache: one refetch for it, and the fresh document does not have it.
    const e = await refusal(c.keysFor('rsa'));
    expect(e.code).toBe('LEASH_VERIFY_INVALID');
    expect(c.fetches).toBe(2);
    expect(srv.hits).toBe(2);
  });

  it('a kid echoed into the error context is bounded to 64 characters (it is attacker-chosen)', async () => {
    const good = await signingKey('good');
    const srv = await jwksServer(json({ keys: [good.jwk] }));
    const clock = new HandClock();
    const c = cache(srv.url, clock, { minRefetchMs: 1_000 });
    await c.refresh('load');
    const long = 'k'.repeat(200);
    const invalid = await refusal(c.keysFor(long));
    expect(invalid.code).toBe('LEASH_VERIFY_INVALID');
    expect(invalid.context.kid).toBe('k'.repeat(64));
    const limited = await refusal(c.keysFor(long));
    expect(limited.code).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(limited.context.kid).toBe('k'.repeat(64));
  });

  /** A cache that never loaded refuses every token as UNAVAILABLE, naming why the fetch failed. */
  async function firstFetchRefusal(answer: Answer, o: { timeoutMs?: number } = {}): Promise<{ e: VerifyError; c: JwksCache }> {
    const srv = await jwksServer(answer);
    const c = cache(srv.url, new HandClock(), o);
    const e = await refusal(c.keysFor('good'));
    expect(e.code).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(e.message).toMatch(/cannot be fetched and none is cached/);
    expect(c.loaded).toBe(false);
    expect(c.fetches).toBe(1);
    return { e, c };
  }

  it('a non-200 answer is refused by its status even when its body is a good JWKS', async () => {
    const good = await signingKey('good');
    const { e } = await firstFetchRefusal(json({ keys: [good.jwk] }, 503));
    expect(e.message).toContain('HTTP 503');
  });

  it('a non-200 answer with a body over 1 MiB is reported by its status, not its size', async () => {
    const { e } = await firstFetchRefusal((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('x'.repeat(2 * 1024 * 1024));
    });
    expect(e.message).toContain('HTTP 502');
  });

  it('a 200 body over 1 MiB is refused as too large', async () => {
    const good = await signingKey('good');
    const { e } = await firstFetchRefusal((_req, res) => {
      // A valid document, padded past the cap: the size alone refuses it.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [good.jwk], pad: 'x'.repeat(1024 * 1024) }));
    });
    expect(e.message).toMatch(/1 MiB/);
    expect(e.message).not.toMatch(/HTTP/);
  });

  it('a body that is not JSON is refused', async () => {
    const { e } = await firstFetchRefusal((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"keys": [');
    });
    expect(e.message).toMatch(/not JSON/);
  });

  it('JSON without a "keys" array is refused', async () => {
    const { e } = await firstFetchRefusal(json({ key: [] }));
    expect(e.message).toMatch(/"keys"/);
  });

  it('a document holding only unusable keys is a failed fetch (not a loaded, empty key set)', async () => {
    await firstFetchRefusal(json({ keys: [{ kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'good' }] }));
  });

  it('an endpoint that never answers is cut at timeoutMs', async () => {
    // The request is read and never answered: no response head, so no status.
    const { e } = await firstFetchRefusal(() => {}, { timeoutMs: 150 });
    expect(e.message).toMatch(/150 ms/);
    expect(e.message).not.toMatch(/HTTP/);
  });

  it('a refused connection is reported with its error code', async () => {
    const srv = await jwksServer(json({ keys: [] }));
    await cleanups.pop()!(); // close it: the port now refuses
    const c = cache(srv.url, new HandClock());
    const e = await refusal(c.keysFor('good'));
    expect(e.code).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(e.message).toContain('ECONNREFUSED');
  });

  it('with nothing cached, a rate-limited miss is still "none is cached"', async () => {
    const srv = await jwksServer(json({}, 503));
    const clock = new HandClock();
    const c = cache(srv.url, clock, { minRefetchMs: 30_000 });
    expect((await refusal(c.keysFor('good'))).message).toContain('HTTP 503');
    clock.t += 500; // within the 1 s after a failed fetch: no fetch
    const e = await refusal(c.keysFor('good'));
    expect(e.code).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(e.message).toMatch(/cannot be fetched and none is cached/);
    expect(c.fetches).toBe(1);
  });
});

describe('JwksCache: refetch rate limits (injected clock)', () => {
  it('a cached key triggers a background refresh only once the cache is older than cacheMs, and not within minRefetchMs of the last attempt', async () => {
    const good = await signingKey('good');
    const srv = await jwksServer(json({ keys: [good.jwk] }));
    const clock = new HandClock();
    const c = cache(srv.url, clock, { cacheMs: 10_000, minRefetchMs: 3_000 });
    const t0 = clock.t;
    await c.refresh('load');
    expect(c.fetches).toBe(1);

    clock.t = t0 + 3_000; // past minRefetchMs but fresh: no refresh
    await c.keysFor('good');
    expect(c.fetches).toBe(1);
    clock.t = t0 + 10_000; // exactly cacheMs old: still fresh
    await c.keysFor('good');
    expect(c.fetches).toBe(1);

    // Older than cacheMs: refreshed in the background; this one fails (the endpoint is down).
    srv.answer = json({}, 503);
    clock.t = t0 + 10_001;
    await c.keysFor('good');
    expect(c.fetches).toBe(2);
    expect(await c.refresh('stale')).toBe('failed'); // joins the background fetch
    const t1 = clock.t;

    // Still stale, but the last attempt was less than minRefetchMs ago: no new fetch; the cached key still serves.
    clock.t = t1 + 2_999;
    await jwtVerify(await good.sign(), await c.keysFor('good'));
    expect(c.fetches).toBe(2);
    clock.t = t1 + 3_000;
    await c.keysFor('good');
    expect(c.fetches).toBe(3);
  });

  it('an unknown kid refetches at most once per minRefetchMs; in between it is refused as rate-limited', async () => {
    const first = await signingKey('first');
    const next = await signingKey('next');
    const srv = await jwksServer(json({ keys: [first.jwk] }));
    const clock = new HandClock();
    const c = cache(srv.url, clock, { minRefetchMs: 3_000 });
    const t0 = clock.t;
    await c.refresh('load');

    expect((await refusal(c.keysFor('next'))).code).toBe('LEASH_VERIFY_INVALID');
    expect(c.fetches).toBe(2);

    srv.answer = json({ keys: [first.jwk, next.jwk] }); // the authority rotated
    clock.t = t0 + 2_999;
    const e = await refusal(c.keysFor('next'));
    expect(e.code).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(e.message).toMatch(/rate-limited/);
    expect(c.fetches).toBe(2);

    clock.t = t0 + 3_000;
    await jwtVerify(await next.sign(), await c.keysFor('next'));
    expect(c.fetches).toBe(3);

    // The miss limit is for misses: the start-up load is never held back by it.
    clock.t += 1;
    expect(await c.refresh('load')).toBe('fetched');
    expect(c.fetches).toBe(4);
  });

  it('after failed refetches the next miss may come sooner: 1 s, doubling, up to minRefetchMs; a success resets it', async () => {
    const first = await signingKey('first');
    const next = await signingKey('next');
    const srv = await jwksServer(json({ keys: [first.jwk] }));
    const clock = new HandClock();
    const c = cache(srv.url, clock, { minRefetchMs: 30_000 });
    await c.refresh('load');
    srv.answer = json({}, 503);

    let fetches = c.fetches;
    const missFails = async () => {
      const e = await refusal(c.keysFor('next'));
      expect(e.code).toBe('LEASH_VERIFY_UNAVAILABLE');
      expect(e.message).toMatch(/not in the cached JWKS and the JWKS cannot be refetched/);
      expect(e.message).toContain('HTTP 503');
      expect(c.fetches).toBe(++fetches);
    };
    const missLimited = async (kid = 'next') => {
      const e = await refusal(c.keysFor(kid));
      expect(e.code).toBe('LEASH_VERIFY_UNAVAILABLE');
      expect(e.message).toMatch(/rate-limited/);
      expect(c.fetches).toBe(fetches);
    };

    await missFails();
    for (const wait of [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]) {
      clock.t += wait - 1;
      await missLimited();
      clock.t += 1;
      await missFails();
    }

    srv.answer = json({ keys: [first.jwk, next.jwk] });
    clock.t += 30_000;
    await jwtVerify(await next.sign(), await c.keysFor('next'));
    expect(c.fetches).toBe(++fetches);
    // Success: back to one miss refetch per minRefetchMs.
    clock.t += 1_000;
    await missLimited('other');
  });
});
