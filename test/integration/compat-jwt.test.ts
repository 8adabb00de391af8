import { SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import { createVerifier, type Verifier } from '../../src/verify/index.js';
import { codeOf, id, ISS, jwksUrl, startKeyedAuthority, type KeyedAuthority } from '../helpers/verify-util.js';

/**
 * Version skew between leash/verify and a newer authority's JWTs (docs/verify.md, "Across
 * versions"): claims it does not know are ignored (additive: a newer authority may add
 * claims that only inform); a `crit` header — how a newer authority would say "you must
 * understand this to accept the token" — is refused whatever it names (RFC 7515
 * §4.1.11); a known claim whose type a newer authority changed is refused, not read in
 * part. Real HTTPS authority, its real signing key, the real verifier. (Pins behaviour
 * that was already right.)
 */
let authority: KeyedAuthority;
let verifier: Verifier | undefined;

beforeAll(async () => {
  authority = await startKeyedAuthority();
});
afterAll(async () => {
  await authority?.stop();
});
afterEach(async () => {
  await verifier?.close();
});

async function newVerifier(bus?: MemoryRevocationBus): Promise<Verifier> {
  verifier = createVerifier({ jwksUrl: jwksUrl(authority), ca: authority.caPem, issuer: ISS, audience: 'search-api', ...(bus ? { revocations: { bus } } : {}) });
  await verifier.ready();
  return verifier;
}

function claims(extra: Record<string, unknown> = {}) {
  const iat = Math.floor(Date.now() / 1000);
  return { iss: ISS, sub: id('agent-1'), aud: 'search-api', jti: `l-${Math.random().toString(36).slice(2)}`, scope: 'search:read', iat, nbf: iat, exp: iat + 300, leash_cred: 'search', leash_iat_ms: iat * 1000, ...extra };
}

/** Signed with the authority's current key, with whatever protected header a newer authority would set. */
async function sign(payload: Record<string, unknown>, header: Record<string, unknown> = {}, crit?: Record<string, boolean>): Promise<string> {
  const { kid, key } = authority.running.keys.signer();
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header }).sign(key, crit ? { crit } : undefined);
}

describe('leash/verify meets tokens of a newer authority', () => {
  it('claims it does not know are ignored: the token passes, the claims are handed over', async () => {
    const v = await newVerifier();
    const token = await sign(claims({ leash_route: 'search', leash_v: 2, cnf: { jkt: 'abc' } }));
    const ok = await v.verify(token);
    expect(ok.claims.leash_route).toBe('search');
  });

  it('a crit header is refused (LEASH_VERIFY_INVALID), whether or not the claim it names is present', async () => {
    const v = await newVerifier();
    const bound = await sign(claims({ leash_bind: 'dpop' }), { crit: ['leash_bind'], leash_bind: 'dpop' }, { leash_bind: true });
    expect(await codeOf(v.verify(bound))).toBe('LEASH_VERIFY_INVALID');
    const err = (await v.verify(bound).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/crit/);
    const b64 = await sign(claims(), { crit: ['b64'], b64: true }, { b64: true });
    expect(await codeOf(v.verify(b64))).toBe('LEASH_VERIFY_INVALID');
  });

  it('a known claim whose type a newer authority changed is refused, not read half', async () => {
    const v = await newVerifier();
    expect(await codeOf(v.verify(await sign(claims({ leash_cred: ['search', 'other'] }))))).toBe('LEASH_VERIFY_INVALID');
    expect(await codeOf(v.verify(await sign(claims({ sub: { id: id('agent-1') } }))))).toBe('LEASH_VERIFY_INVALID');
  });

  it('a token of an authority that predates leash_cred falls under every credential revocation (which lease it is cannot be told)', async () => {
    const bus = new MemoryRevocationBus();
    const v = await newVerifier(bus);
    const { leash_cred: _c, ...older } = claims();
    const untagged = await sign(older);
    const other = await sign(claims({ leash_cred: 'other' }));
    expect((await v.verify(untagged)).credential).toBeUndefined();
    await new Promise((r) => setTimeout(r, 5)); // the revocation is strictly after their issue
    const r = await bus.publish({ scope: 'credential', target: 'search', reason: 'leaked', by: 'test' });
    const err = (await v.verify(untagged).catch((e: unknown) => e)) as { code: string; context: Record<string, unknown> };
    expect(err.code).toBe('LEASH_VERIFY_REVOKED');
    expect(err.context).toMatchObject({ scope: 'credential', revocation: r.id });
    expect((await v.verify(other)).credential).toBe('other');
    // Issued after the revocation (a later second): passes again.
    const later = Math.floor(Date.parse(r.at) / 1000) + 2;
    const { leash_cred: _d, ...fresh } = claims({ iat: later, nbf: later - 5, leash_iat_ms: later * 1000 });
    expect((await v.verify(await sign(fresh))).credential).toBeUndefined();
  });
});
