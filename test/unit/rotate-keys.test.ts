import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JwtKeyRing } from '../../src/authority/issuers/jwt.js';
import { CertificateAuthority, trustedCaCertificates } from '../../src/pki/ca.js';
import { verifyClientCertificate } from '../../src/pki/verify.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { rejection, tempDir } from '../helpers/issuers-util.js';

/**
 * The pure halves of the rotations in test/e2e/rotate-*.test.ts: a staged JWT key
 * (`*.next.pem`) is published and never signs until renamed; extra trusted CAs
 * (`ca.trustedCertFiles`) are checked at load and accepted for client certificates, also
 * when old and new CA share a subject name.
 */
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

describe('staged JWT signing keys', () => {
  it('a *.next.pem key is published and never signs; renamed to *.pem it signs (same kid)', async () => {
    const dir = keysDir();
    writeFileSync(join(dir, '2026-01-01.pem'), ecPem());
    writeFileSync(join(dir, '2027-01-01.next.pem'), ecPem());
    const ring = await JwtKeyRing.fromDir(dir);
    const [oldKid, nextKid] = ring.kids();
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([oldKid, nextKid]);
    expect(ring.signer().kid).toBe(oldKid);

    renameSync(join(dir, '2027-01-01.next.pem'), join(dir, '2027-01-01.pem'));
    await ring.reload();
    expect(ring.signer().kid).toBe(nextKid);
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([oldKid, nextKid]);

    // Staged again (a roll-back): the old key signs again.
    renameSync(join(dir, '2027-01-01.pem'), join(dir, '2027-01-01.next.jwk.tmp'));
    renameSync(join(dir, '2027-01-01.next.jwk.tmp'), join(dir, '2027-01-01.next.pem'));
    await ring.reload();
    expect(ring.signer().kid).toBe(oldKid);
  });

  it('a directory of staged keys only is refused at start, and a reload to one keeps the ring as it was', async () => {
    const dir = keysDir();
    writeFileSync(join(dir, 'a.next.pem'), ecPem());
    const err = await rejection(JwtKeyRing.fromDir(dir));
    expect(err.code).toBe('LEASH_ERR_ISSUER_KEYS');
    expect(err.message).toMatch(/only staged keys/);

    writeFileSync(join(dir, 'b.pem'), ecPem());
    const ring = await JwtKeyRing.fromDir(dir);
    const signing = ring.signer().kid;
    rmSync(join(dir, 'b.pem'));
    expect((await rejection(ring.reload())).code).toBe('LEASH_ERR_ISSUER_KEYS');
    expect(ring.signer().kid).toBe(signing);
  });
});

describe('ca.trustedCertFiles', () => {
  const identity = 'spiffe://leash.local/join/agent-1';
  const csr = () => createCsr(createIdentityKey(), 'agent-1');

  it('accepts client certificates of the old and the new CA although both have the same subject', () => {
    const oldCa = CertificateAuthority.generate('leash.local');
    const newCa = CertificateAuthority.generate('leash.local');
    expect(newCa.certificate.subject).toBe(oldCa.certificate.subject);
    const trusted = [newCa.certificate, ...trustedCaCertificates(oldCa.caPem, 'ca.trustedCertFiles[0]')];
    for (const ca of [oldCa, newCa]) {
      const cert = new X509Certificate(ca.signCsr(csr(), identity, 60_000).certificate);
      expect(verifyClientCertificate(cert, trusted, 'leash.local').identity).toBe(identity);
    }
    const stranger = CertificateAuthority.generate('leash.local');
    const foreign = new X509Certificate(stranger.signCsr(csr(), identity, 60_000).certificate);
    expect(() => verifyClientCertificate(foreign, trusted, 'leash.local')).toThrow(/not issued by the leash CA/);
  });

  it('refuses a file without a certificate, a leaf, an expired CA; names the file and the block', () => {
    const ca = CertificateAuthority.generate('leash.local');
    const leaf = ca.signCsr(csr(), identity, 60_000).certificate;
    const expired = CertificateAuthority.generate('leash.local', { nowMs: Date.now() - 10 * 86_400_000, validityMs: 86_400_000 });
    expect(() => trustedCaCertificates('', 'ca.trustedCertFiles[0]')).toThrow('ca.trustedCertFiles[0]: holds no PEM certificate');
    expect(() => trustedCaCertificates(leaf, 'ca.trustedCertFiles[0]')).toThrow('ca.trustedCertFiles[0]: not a CA certificate');
    expect(() => trustedCaCertificates(ca.caPem + expired.caPem, 'ca.trustedCertFiles[1]')).toThrow(/ca.trustedCertFiles\[1\] \(certificate 2\): expired at/);
    expect(trustedCaCertificates(ca.caPem + CertificateAuthority.generate('leash.local').caPem, 'x')).toHaveLength(2);
  });
});
