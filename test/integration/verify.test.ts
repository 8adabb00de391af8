import { afterEach, describe, expect, it } from 'vitest';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import { createVerifier, httpStatusOf, VerifyError, type Verifier, type VerifierOptions } from '../../src/verify/index.js';
import {
  algNone,
  claimsOf,
  codeOf,
  foreignEs256,
  headerOf,
  hs256WithPublicKey,
  id,
  ISS,
  jwksUrl,
  rs256,
  ShiftClock,
  startKeyedAuthority,
  tamperPayload,
  tamperSignature,
  WarnLog,
  within,
  type KeyedAuthority,
} from '../helpers/verify-util.js';
import { sleep } from '../helpers/wait.js';

/** leash/verify against a real HTTPS authority (its private CA, its JWKS endpoint, its leases). */
let authority: KeyedAuthority | undefined;
const verifiers: Verifier[] = [];

afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
  await authority?.stop();
  authority = undefined;
});

function verifier(a: KeyedAuthority, over: Partial<VerifierOptions> = {}): Verifier {
  const v = createVerifier({ jwksUrl: jwksUrl(a), ca: a.caPem, audience: 'search-api', issuer: ISS, ...over });
  verifiers.push(v);
  return v;
}

describe('leash/verify: tokens', () => {
  it('a valid lease token passes, with its claims', async () => {
    authority = await startKeyedAuthority();
    const v = verifier(authority, { requiredScopes: ['search:read'] });
    await v.ready();
    expect(v.channelUp).toBe(true); // no revocation source configured
    const { token, lease } = await authority.lease('agent-1');
    const out = await v.verify(token, { scopes: ['search:write'] });
    const c = claimsOf(token);
    expect(out).toMatchObject({ sub: id('agent-1'), jti: lease, scopes: ['search:read', 'search:write'], credential: 'search', iat: c.iat, exp: c.exp });
    expect(out.exp - out.iat).toBe(300);
    expect(out.claims.iss).toBe(ISS);
  });

  it('refuses a wrong audience, a missing scope, a wrong issuer and an expired token, each with its code', async () => {
    const clock = new ShiftClock();
    authority = await startKeyedAuthority();
    const v = verifier(authority, { clock });
    await v.ready();
    const other = (await authority.lease('agent-1', 'other')).token;
    expect(await codeOf(v.verify(other))).toBe('LEASH_VERIFY_AUDIENCE');
    const { token } = await authority.lease('agent-1');
    expect(await codeOf(v.verify(token, { scopes: ['search:admin'] }))).toBe('LEASH_VERIFY_SCOPE');
    const strict = verifier(authority, { requiredScopes: ['search:read', 'search:admin'] });
    expect(await codeOf(strict.verify(token))).toBe('LEASH_VERIFY_SCOPE');
    const wrongIss = verifier(authority, { issuer: 'https://someone-else' });
    expect(await codeOf(wrongIss.verify(token))).toBe('LEASH_VERIFY_INVALID');
    // Five minutes later (the token's TTL) plus one second: expired, exactly at tolerance 0.
    clock.offsetMs = 301_000;
    expect(await codeOf(v.verify(token))).toBe('LEASH_VERIFY_EXPIRED');
    const lenient = verifier(authority, { clock, clockToleranceSeconds: 5 });
    expect((await lenient.verify(token)).sub).toBe(id('agent-1'));
    // Not yet valid (nbf in the future) is invalid, not expired.
    clock.offsetMs = -60_000;
    expect(await codeOf(v.verify(token))).toBe('LEASH_VERIFY_INVALID');
    expect(httpStatusOf('LEASH_VERIFY_SCOPE')).toBe(403);
    expect(httpStatusOf('LEASH_VERIFY_EXPIRED')).toBe(401);
    expect(httpStatusOf('LEASH_VERIFY_UNAVAILABLE')).toBe(503);
  });

  it('refuses forgeries: tampered signature or payload, alg none, HS256 keyed with the public key, RS256, garbage', async () => {
    authority = await startKeyedAuthority();
    const v = verifier(authority);
    await v.ready();
    const { token } = await authority.lease('agent-1');
    const forged = [
      tamperSignature(token),
      tamperPayload(token, (p) => (p.scope = 'search:read search:write admin')),
      tamperPayload(token, (p) => (p.exp = (p.exp as number) + 86_400)),
      algNone(token),
      ...(await hs256WithPublicKey(token, authority.running.keys.jwks() as never)),
      await rs256(token),
      await foreignEs256(token, headerOf(token).kid as string), // right kid, wrong key
      '',
      'not-a-jwt',
      'a.b.c',
      `${token}.extra`,
    ];
    for (const t of forged) {
      const err = await v.verify(t).catch((e: unknown) => e);
      expect(err, t.slice(0, 40)).toBeInstanceOf(VerifyError);
      expect((err as VerifyError).code, t.slice(0, 40)).toBe('LEASH_VERIFY_INVALID');
    }
    // The genuine token still passes, and none of that made the verifier refetch the JWKS.
    const served = authority.jwksServed();
    expect((await v.verify(token)).credential).toBe('search');
    expect(authority.jwksServed()).toBe(served);
  });

  it('refuses an https URL it cannot verify (wrong CA) and any non-https JWKS URL', async () => {
    authority = await startKeyedAuthority();
    expect(() => createVerifier({ jwksUrl: jwksUrl(authority!).replace('https:', 'http:'), audience: 'a' })).toThrow(/https/);
    expect(() => createVerifier({ jwksUrl: jwksUrl(authority!), audience: '' })).toThrow(/audience/);
    const noCa = verifier(authority, { ca: undefined, jwksMinRefetchMs: 0 }); // system roots: the private CA is not trusted
    const { token } = await authority.lease('agent-1');
    expect(await codeOf(noCa.verify(token))).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(authority.jwksServed()).toBe(0);
  });
});

describe('leash/verify: JWKS cache', () => {
  it('an unknown kid triggers ONE refetch under 20 concurrent verifies; a second unknown kid within jwksMinRefetchMs does not refetch', async () => {
    const clock = new ShiftClock();
    authority = await startKeyedAuthority({ clock });
    const v = verifier(authority, { clock, jwksMinRefetchMs: 30_000 });
    await v.ready();
    expect(authority.jwksServed()).toBe(1);
    const before = (await authority.lease('agent-1')).token;

    const kid2 = await authority.rotate('0002');
    const { token } = await authority.lease('agent-1');
    expect(headerOf(token).kid).toBe(kid2);
    const results = await Promise.all(Array.from({ length: 20 }, () => v.verify(token)));
    expect(results.every((r) => r.sub === id('agent-1'))).toBe(true);
    expect(authority.jwksServed()).toBe(2);
    expect((await v.verify(before)).sub).toBe(id('agent-1')); // the old key is still published

    // Another rotation 10 s later: within the rate limit, no refetch; the token is refused as retryable.
    clock.offsetMs += 10_000;
    await authority.rotate('0003');
    const third = (await authority.lease('agent-1')).token;
    const codes = await Promise.all(Array.from({ length: 20 }, () => codeOf(v.verify(third))));
    expect(new Set(codes)).toEqual(new Set(['LEASH_VERIFY_UNAVAILABLE']));
    expect(await codeOf(v.verify(await foreignEs256(token, 'made-up')))).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(authority.jwksServed()).toBe(2);

    // Past the window: one refetch, the new key is found; a made-up kid after a fresh fetch is invalid.
    clock.offsetMs += 21_000;
    expect((await v.verify(third)).sub).toBe(id('agent-1'));
    expect(authority.jwksServed()).toBe(3);
    clock.offsetMs += 31_000;
    expect(await codeOf(v.verify(await foreignEs256(token, 'made-up')))).toBe('LEASH_VERIFY_INVALID');
    expect(authority.jwksServed()).toBe(4);
  });

  it('refreshes a JWKS older than jwksCacheMs in the background, still verifying with the cached keys', async () => {
    const clock = new ShiftClock();
    authority = await startKeyedAuthority({ clock });
    const v = verifier(authority, { clock, jwksCacheMs: 60_000 });
    await v.ready();
    const { token } = await authority.lease('agent-1');
    await v.verify(token);
    expect(authority.jwksServed()).toBe(1);
    clock.offsetMs += 61_000;
    await v.verify(token);
    await sleep(200);
    expect(authority.jwksServed()).toBe(2);
    await v.verify(token);
    expect(authority.jwksServed()).toBe(2);
  });

  it('JWKS endpoint down: cached keys keep working; with no cache every token is LEASH_VERIFY_UNAVAILABLE and ready() waits', async () => {
    const clock = new ShiftClock();
    authority = await startKeyedAuthority({ clock });
    const warn = new WarnLog();
    const v = verifier(authority, { clock, logger: warn, jwksCacheMs: 1_000, jwksMinRefetchMs: 1_000 });
    await v.ready();
    const { token } = await authority.lease('agent-1');
    const url = jwksUrl(authority);
    const caPem = authority.caPem;
    await authority.stop();
    authority = undefined;
    clock.offsetMs += 5_000; // cache stale: a background refetch fails, the stale keys stay
    expect((await v.verify(token)).sub).toBe(id('agent-1'));
    await sleep(300);
    expect(warn.has(/JWKS fetch failed/)).toBe(true);
    expect((await v.verify(token)).sub).toBe(id('agent-1'));

    // A fresh verifier against the dead endpoint: nothing cached.
    const cold = createVerifier({ jwksUrl: url, ca: caPem, audience: 'search-api', jwksMinRefetchMs: 0, jwksTimeoutMs: 500 });
    verifiers.push(cold);
    expect(await codeOf(cold.verify(token))).toBe('LEASH_VERIFY_UNAVAILABLE');
    const state = await Promise.race([cold.ready().then(() => 'ready'), new Promise((r) => setTimeout(() => r('waiting'), 300))]);
    expect(state).toBe('waiting');
  });

  it('a refetch for a new kid that failed (the endpoint was down) is tried again after 1 s, not after jwksMinRefetchMs', async () => {
    const clock = new ShiftClock();
    authority = await startKeyedAuthority({ clock });
    const v = verifier(authority, { clock, jwksMinRefetchMs: 30_000, jwksTimeoutMs: 500 });
    await v.ready();
    await authority.rotate('0002');
    const { token } = await authority.lease('agent-1');
    const https = authority.running.server.server;
    const port = Number(new URL(authority.url).port);
    await new Promise<void>((resolve) => {
      https.closeAllConnections();
      https.close(() => resolve());
    });
    expect(await codeOf(v.verify(token))).toBe('LEASH_VERIFY_UNAVAILABLE'); // refetch failed
    await authority.running.server.listen('127.0.0.1', port);
    clock.offsetMs += 500;
    expect(await codeOf(v.verify(token))).toBe('LEASH_VERIFY_UNAVAILABLE'); // within the retry delay: limited
    expect(authority.jwksServed()).toBe(1);
    clock.offsetMs += 600; // 1.1 s after the failure: tried again, found
    expect((await v.verify(token)).sub).toBe(id('agent-1'));
    expect(authority.jwksServed()).toBe(2);
    // After a successful fetch the full window applies again to a made-up kid.
    expect(await codeOf(v.verify(await foreignEs256(token, 'made-up')))).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(authority.jwksServed()).toBe(2);
  });

  it('ready() waits while the JWKS endpoint is down and resolves once it comes up', async () => {
    authority = await startKeyedAuthority();
    const https = authority.running.server.server;
    const port = Number(new URL(authority.url).port);
    await new Promise<void>((resolve) => {
      https.closeAllConnections();
      https.close(() => resolve());
    });
    const v = verifier(authority);
    let ready = false;
    void v.ready().then(() => (ready = true));
    await sleep(400);
    expect(ready).toBe(false);
    await authority.running.server.listen('127.0.0.1', port);
    await within(() => ready, 8_000);
    const { token } = await authority.lease('agent-1');
    expect((await v.verify(token)).sub).toBe(id('agent-1'));
  });
});

describe('leash/verify: in-process bus (leash dev)', () => {
  it('applies revocations from a MemoryRevocationBus', async () => {
    authority = await startKeyedAuthority();
    const bus = new MemoryRevocationBus();
    const v = verifier(authority, { revocations: { bus } });
    await v.ready();
    expect(v.channelUp).toBe(true);
    const a = await authority.lease('agent-1');
    const b = await authority.lease('agent-1');
    await bus.publish({ scope: 'lease', target: a.lease, reason: 'test', by: 'test' });
    expect(await codeOf(v.verify(a.token))).toBe('LEASH_VERIFY_REVOKED');
    expect((await v.verify(b.token)).jti).toBe(b.lease);
    await v.close();
    expect(v.channelUp).toBe(false);
    expect(await codeOf(v.verify(b.token))).toBe('LEASH_VERIFY_UNAVAILABLE');
  });
});
