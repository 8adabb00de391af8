import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import { SignJWT } from 'jose';
import { createVerifier, type Verifier, type VerifierOptions } from '../../src/verify/index.js';
import { claimsOf, codeOf, ISS, jwksUrl, ShiftClock, signAsAuthority, startKeyedAuthority, type KeyedAuthority } from '../helpers/verify-util.js';

/** Edges of leash/verify's input and claims checks that verify.test.ts does not pin (mutation survivors). */
let authority: KeyedAuthority;
const verifiers: Verifier[] = [];

beforeAll(async () => {
  authority = await startKeyedAuthority();
});
afterAll(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
  await authority.stop();
});

function verifier(over: Partial<VerifierOptions> = {}): Verifier {
  const v = createVerifier({ jwksUrl: jwksUrl(authority), ca: authority.caPem, audience: 'search-api', issuer: ISS, ...over });
  verifiers.push(v);
  return v;
}

/** A correctly signed lease token whose compact form is exactly `len` characters (padding claim tuned). */
async function tokenOfLength(claims: Record<string, unknown>, len: number): Promise<string | undefined> {
  const base = await signAsAuthority(authority, claims);
  const est = Math.floor(((len - base.length) * 3) / 4);
  for (const key of ['pad', 'padd', 'paddd']) {
    for (let n = est - 12; n < est + 12; n++) {
      const t = await signAsAuthority(authority, { ...claims, [key]: 'x'.repeat(Math.max(0, n)) });
      if (t.length === len) return t;
    }
  }
  return undefined;
}

describe('leash/verify: construction and input edges', () => {
  it('refuses an empty audience list and a malformed required scope at construction', () => {
    expect(() => verifier({ audience: [] })).toThrow(TypeError);
    expect(() => verifier({ requiredScopes: ['has space'] })).toThrow(TypeError);
    expect(() => verifier({ requiredScopes: ['search:read'] })).not.toThrow();
  });

  it('caps token size at 16 384 characters: a valid token of exactly that size passes, one character more is refused', async () => {
    const v = verifier();
    await v.ready();
    const claims = claimsOf((await authority.lease('agent-1')).token);
    const atCap = await tokenOfLength(claims, 16_384);
    const over = await tokenOfLength(claims, 16_386);
    expect(atCap, 'could not tune a token to 16 384 chars').toBeDefined();
    expect(over).toBeDefined();
    expect((await v.verify(atCap!)).sub).toBe(claims.sub);
    // Correctly signed: only the size limit refuses it.
    expect(await codeOf(v.verify(over!))).toBe('LEASH_VERIFY_INVALID');
    expect(await codeOf(v.verify(''))).toBe('LEASH_VERIFY_INVALID');
  });

  it('reports scopes split on single spaces without empty entries, and [] when the token has no scope claim', async () => {
    const v = verifier();
    await v.ready();
    const claims = claimsOf((await authority.lease('agent-1')).token);
    const doubled = await signAsAuthority(authority, { ...claims, scope: ' search:read  search:write ' });
    expect((await v.verify(doubled)).scopes).toEqual(['search:read', 'search:write']);
    const { scope: _drop, ...noScope } = claims;
    const bare = await signAsAuthority(authority, noScope);
    expect((await v.verify(bare)).scopes).toEqual([]);
    // Scopes are still checked against the cleaned list.
    expect(await codeOf(v.verify(doubled, { scopes: ['search:admin'] }))).toBe('LEASH_VERIFY_SCOPE');
  });

  it('keeps a lease revocation for maxTokenTtlMs plus the clock tolerance: a tolerated token is still refused after maxTokenTtlMs', async () => {
    const clock = new ShiftClock();
    const bus = new MemoryRevocationBus(() => clock.wallMs());
    // maxTokenTtlMs below the lease TTL (5 min) so the retention edge falls inside the token's life.
    const v = verifier({ clock, clockToleranceSeconds: 30, maxTokenTtlMs: 280_000, revocations: { bus } });
    await v.ready();
    const a = await authority.lease('agent-1');
    await bus.publish({ scope: 'lease', target: a.lease, reason: 'test', by: 'test' });
    // 290 s later: past maxTokenTtlMs (280 s) but within it plus 30 s tolerance (310 s); the token is unexpired.
    clock.offsetMs = 290_000;
    expect(await codeOf(v.verify(a.token))).toBe('LEASH_VERIFY_REVOKED');
    // Past 310 s the entry is gone (the token itself is still within exp + tolerance).
    clock.offsetMs = 315_000;
    expect(await codeOf(v.verify(a.token))).toBe('passed');
  });

  it('refuses a token without a kid as invalid, without asking the authority for its JWKS again', async () => {
    const v = verifier();
    await v.ready();
    const claims = claimsOf((await authority.lease('agent-1')).token);
    const { key } = authority.running.keys.signer();
    const noKid = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT' }).sign(key);
    const emptyKid = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: '' }).sign(key);
    // A numeric kid is no kid either (it must never reach the JWKS lookup as a non-string).
    const numericKid = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 7 as never }).sign(key);
    const served = authority.jwksServed();
    expect(await codeOf(v.verify(numericKid))).toBe('LEASH_VERIFY_INVALID');
    expect(await codeOf(v.verify(noKid))).toBe('LEASH_VERIFY_INVALID');
    expect(await codeOf(v.verify(emptyKid))).toBe('LEASH_VERIFY_INVALID');
    expect(authority.jwksServed()).toBe(served);
  });
});
