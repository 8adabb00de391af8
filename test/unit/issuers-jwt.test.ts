import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { IssuerError } from '../../src/authority/issuers/errors.js';
import { JwtIssuer, JwtKeyRing } from '../../src/authority/issuers/jwt.js';
import { rejection, request, tempDir } from '../helpers/issuers-util.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
function keysDir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}
const ecPem = (): string => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
const ecJwk = (): string => JSON.stringify(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }));

const ISS = 'https://leash-authority.test';

describe('JwtIssuer', () => {
  it('issues an ES256 JWT that verifies strictly against the ring JWKS, with every claim right', async () => {
    const keys = await JwtKeyRing.generate();
    const issuer = new JwtIssuer({ issuer: ISS, audience: 'search-api', scopes: ['search:read', 'search:write'], keys });
    const req = request({ maxTtlMs: 300_500 });
    const out = await issuer.issue(req);
    const { payload, protectedHeader } = await jwtVerify(out.value, createLocalJWKSet(keys.jwks()), {
      issuer: ISS,
      audience: 'search-api',
      algorithms: ['ES256'],
      clockTolerance: 0,
      currentDate: new Date(req.nowMs),
    });
    const iat = Math.floor(req.nowMs / 1000);
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: keys.signer().kid, typ: 'JWT' });
    expect(payload).toEqual({
      iss: ISS,
      sub: req.identity,
      aud: 'search-api',
      scope: 'search:read search:write',
      jti: req.leaseId,
      iat,
      nbf: iat,
      exp: Math.floor((req.nowMs + 300_500) / 1000),
      leash_cred: req.credential,
      leash_iat_ms: req.nowMs,
    });
    expect(out).toEqual({ value: out.value, version: req.leaseId, issuedAtMs: req.nowMs, expiresAtMs: payload.exp! * 1000 });
    expect(out.expiresAtMs).toBeLessThanOrEqual(req.nowMs + req.maxTtlMs);
  });

  it('ttl is min(configured, maxTtl); no scope claim without scopes; jti random without a lease id', async () => {
    const keys = await JwtKeyRing.generate();
    const issuer = new JwtIssuer({ issuer: ISS, audience: ['a', 'b'], keys, ttlMs: 60_000 });
    const req = request({ leaseId: '', nowMs: 1_700_000_000_000 });
    const out = await issuer.issue(req);
    const { payload } = await jwtVerify(out.value, createLocalJWKSet(keys.jwks()), { audience: 'b', currentDate: new Date(req.nowMs) });
    expect(payload.exp! - payload.iat!).toBe(60);
    expect(payload.scope).toBeUndefined();
    expect(payload.aud).toEqual(['a', 'b']);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
    const capped = await issuer.issue(request({ maxTtlMs: 10_000, nowMs: 1_700_000_000_000 }));
    expect(capped.expiresAtMs - 1_700_000_000_000).toBe(10_000);
  });

  it('a token fails verification once expired and before its nbf (no clock tolerance)', async () => {
    const keys = await JwtKeyRing.generate();
    const issuer = new JwtIssuer({ issuer: ISS, audience: 'x', keys });
    const req = request({ nowMs: 1_700_000_000_000, maxTtlMs: 60_000 });
    const { value } = await issuer.issue(req);
    const jwks = createLocalJWKSet(keys.jwks());
    await expect(jwtVerify(value, jwks, { currentDate: new Date(req.nowMs + 60_000) })).rejects.toMatchObject({ code: 'ERR_JWT_EXPIRED' });
    await expect(jwtVerify(value, jwks, { currentDate: new Date(req.nowMs - 1000) })).rejects.toMatchObject({ code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
  });

  it('a TTL under one second and a malformed scope are config errors', async () => {
    const keys = await JwtKeyRing.generate();
    const issuer = new JwtIssuer({ issuer: ISS, audience: 'x', keys });
    const err = await rejection(issuer.issue(request({ maxTtlMs: 500, nowMs: 1_700_000_000_000 })));
    expect(err).toBeInstanceOf(IssuerError);
    expect(err.code).toBe('LEASH_ERR_ISSUER_CONFIG');
    expect(() => new JwtIssuer({ issuer: ISS, audience: 'x', keys, scopes: ['a b'] })).toThrow(/invalid scope/);
  });

  it('issue after close fails with LEASH_ERR_ISSUER_CLOSED', async () => {
    const issuer = new JwtIssuer({ issuer: ISS, audience: 'x', keys: await JwtKeyRing.generate() });
    await issuer.close();
    expect((await rejection(issuer.issue(request()))).code).toBe('LEASH_ERR_ISSUER_CLOSED');
  });
});

describe('JwtKeyRing', () => {
  it('JWKS entries are public only, with kid = RFC 7638 thumbprint, alg ES256, use sig', async () => {
    const keys = await JwtKeyRing.generate();
    const [jwk] = keys.jwks().keys;
    expect(Object.keys(jwk!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwk!.kid).toBe(await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk!.x!, y: jwk!.y! }));
  });

  it('two keys in a dir: the last by name signs, both are published, tokens of both verify', async () => {
    const dir = keysDir();
    writeFileSync(join(dir, '2025-01-01.pem'), ecPem());
    writeFileSync(join(dir, '2025-06-01.jwk'), ecJwk());
    writeFileSync(join(dir, 'README.txt'), 'not a key');
    writeFileSync(join(dir, '.hidden.pem'), 'ignored: dot-file');
    const old = await JwtKeyRing.fromDir(join(dir));
    expect(old.jwks().keys).toHaveLength(2);
    const [k1, k2] = old.kids();
    expect(old.signer().kid).toBe(k2);

    const issuer = new JwtIssuer({ issuer: ISS, audience: 'x', keys: old });
    const token = (await issuer.issue(request())).value;
    expect(decodeProtectedHeader(token).kid).toBe(k2);
    await jwtVerify(token, createLocalJWKSet(old.jwks()), { issuer: ISS, audience: 'x' });

    // a token signed earlier with the older key still verifies against the same JWKS
    old.retire(k2!, Date.now() + 60_000);
    expect(old.signer().kid).toBe(k1);
    const older = (await issuer.issue(request())).value;
    expect(decodeProtectedHeader(older).kid).toBe(k1);
    await jwtVerify(older, createLocalJWKSet(old.jwks()), { issuer: ISS, audience: 'x' });
    expect(old.jwks().keys.map((k) => k.kid).sort()).toEqual([k1, k2].sort());
  });

  it('a token signed by a key not in the ring fails verification', async () => {
    const keys = await JwtKeyRing.generate();
    const stranger = await generateKeyPair('ES256');
    const kid = keys.signer().kid; // even claiming the ring's kid does not help
    const forged = await new SignJWT({ scope: 'admin' })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
      .setIssuer(ISS)
      .setAudience('x')
      .setSubject('spiffe://leash.local/evil')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(stranger.privateKey);
    await expect(jwtVerify(forged, createLocalJWKSet(keys.jwks()), { issuer: ISS, audience: 'x' })).rejects.toMatchObject({
      code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    });
    const unknownKid = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'nope' }).setIssuer(ISS).setAudience('x').setExpirationTime('5m').sign(stranger.privateKey);
    await expect(jwtVerify(unknownKid, createLocalJWKSet(keys.jwks()))).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
  });

  it('reload: a new key file signs at once; a removed one stops signing but stays published while its tokens live', async () => {
    const dir = keysDir();
    writeFileSync(join(dir, 'a.pem'), ecPem());
    let now = 1_700_000_000_000;
    const ring = await JwtKeyRing.fromDir(dir, { clock: { wallMs: () => now, monotonicMs: () => now }, retireGraceMs: 1000 });
    const [ka] = ring.kids();
    const issuer = new JwtIssuer({ issuer: ISS, audience: 'x', keys: ring });
    await issuer.issue(request({ nowMs: now, maxTtlMs: 600_000 })); // a's last token expires at now + 10 min

    writeFileSync(join(dir, 'b.pem'), ecPem());
    const { rmSync } = await import('node:fs');
    rmSync(join(dir, 'a.pem'));
    await ring.reload();
    const kb = ring.signer().kid;
    expect(kb).not.toBe(ka);
    expect(ring.jwks().keys.map((k) => k.kid).sort()).toEqual([ka, kb].sort());
    now += 300_000; // past the grace, not past a's last token
    expect(ring.jwks().keys.map((k) => k.kid)).toContain(ka);
    now += 300_001; // a's last token has expired
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([kb]);
  });

  it('a dir without keys, a public key, an RSA key or a P-384 key fail with LEASH_ERR_ISSUER_KEYS naming the file', async () => {
    const empty = keysDir();
    expect((await rejection(JwtKeyRing.fromDir(empty))).code).toBe('LEASH_ERR_ISSUER_KEYS');
    expect((await rejection(JwtKeyRing.fromDir(join(empty, 'missing')))).message).toMatch(/ENOENT/);

    const cases: Array<[string, string]> = [
      ['pub.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString()],
      ['rsa.pem', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()],
      ['p384.pem', generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()],
      ['junk.jwk', '{"kty":"EC"'],
    ];
    for (const [name, text] of cases) {
      const dir = keysDir();
      writeFileSync(join(dir, name), text);
      const err = await rejection(JwtKeyRing.fromDir(dir));
      expect(err, name).toBeInstanceOf(IssuerError);
      expect(err.code, name).toBe('LEASH_ERR_ISSUER_KEYS');
      expect(err.message, name).toContain(name);
      expect(err.message, name).not.toContain('PRIVATE KEY');
    }
  });

  it('a malformed key file never puts its contents in the error or its causes (what a reload failure logs)', async () => {
    // Made-up key material; JSON.parse's SyntaxError quotes the text near the fault.
    const material = 'MadeUpPrivateScalarNotAKey0123456789abcdefABCDEF';
    const cases: Array<[string, string]> = [
      ['cut.jwk', `{"kty":"EC","crv":"P-256","d":"${material}`],
      ['bare.jwk', `{"kty":"EC","crv":"P-256","d":${material}}`],
      ['junk.pem', `-----BEGIN PRIVATE KEY-----\n${material}\n-----END PRIVATE KEY-----\n`],
      ['wrong.jwk', `{"kty":"EC","crv":"P-256","x":"${material}","y":"${material}","d":"${material}"}`],
    ];
    for (const [name, text] of cases) {
      const dir = keysDir();
      writeFileSync(join(dir, name), text);
      const err = await rejection(JwtKeyRing.fromDir(dir));
      const chain: string[] = [];
      for (let e: unknown = err; e instanceof Error; e = e.cause) chain.push(e.message, String(e.stack), JSON.stringify(e));
      expect(chain.join('\n'), name).not.toContain(material.slice(0, 6));
    }
  });

  it('generate(): the signing key is extractable (dev tooling may persist it)', async () => {
    const ring = await JwtKeyRing.generate();
    const jwk = await exportJWK(ring.signer().key);
    expect(jwk.d).toBeTruthy();
  });

});
