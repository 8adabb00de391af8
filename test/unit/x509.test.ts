import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { verifyCsr } from '../../src/pki/csr.js';
import {
  certificateInfo,
  createCsr,
  createIdentityKey,
  der,
  encodeName,
  parseCertificateDer,
  pemToDer,
  readTlv,
  X509Error,
} from '../../src/pki/x509.js';

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const ID = 'spiffe://leash.local/ns/agents/sa/doc-agent';

describe('createIdentityKey', () => {
  it('makes an EC P-256 key pair whose halves match', () => {
    const k = createIdentityKey();
    const priv = createPrivateKey(k.privateKeyPem);
    expect(priv.asymmetricKeyType).toBe('ec');
    expect(priv.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(k.privateKeyPem).toContain('-----BEGIN PRIVATE KEY-----');
    expect(createPublicKey(priv).export({ type: 'spki', format: 'pem' })).toBe(k.publicKeyPem);
  });

  it('makes a different key every time, fast (node:crypto, not forge)', () => {
    const t = performance.now();
    const keys = new Set(Array.from({ length: 20 }, () => createIdentityKey().publicKeyPem));
    expect(keys.size).toBe(20);
    expect((performance.now() - t) / 20).toBeLessThan(20); // ~0.3 ms measured; RSA 2048 is ~400 ms
  });
});

describe('createCsr', () => {
  it('makes a PKCS#10 CSR whose self-signature verifies with node:crypto and carries the key', () => {
    const k = createIdentityKey();
    const csr = createCsr(k, 'leash-sidecar');
    expect(csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE REQUEST-----\n$/);
    const { spki } = verifyCsr(csr);
    expect(spki.equals(createPublicKey(k.publicKeyPem).export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  it.skipIf(!hasOpenssl)('is accepted by OpenSSL (openssl req -verify), with CN as subject and no attributes', () => {
    const csr = createCsr(createIdentityKey(), 'leash-sidecar');
    const out = execFileSync('openssl', ['req', '-verify', '-noout', '-subject'], { input: csr, stdio: ['pipe', 'pipe', 'pipe'] }).toString();
    expect(out).toMatch(/subject=CN\s?=\s?leash-sidecar/);
  });

  it('works for RSA keys too', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const csr = createCsr({ privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }, 'rsa-sidecar');
    expect(verifyCsr(csr).publicKey.asymmetricKeyType).toBe('rsa');
  });

  it('refuses an unreadable key and a bad common name with LEASH_ERR_X509_INVALID', () => {
    const k = createIdentityKey();
    expect(() => createCsr({ privateKeyPem: 'not a key' }, 'x')).toThrow(X509Error);
    expect(() => createCsr(k, '')).toThrow(expect.objectContaining({ code: 'LEASH_ERR_X509_INVALID' }));
    expect(() => createCsr(k, 'x'.repeat(65))).toThrow(X509Error);
    const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(() => createCsr({ privateKeyPem: ed }, 'x')).toThrow(/unsupported signing key type ed25519/);
  });
});

describe('certificateInfo', () => {
  const ca = CertificateAuthority.generate('leash.local');

  it('reads URI SANs, validity, serial and fingerprint, agreeing with Node', () => {
    const issued = ca.signCsr(createCsr(createIdentityKey(), 'x'), ID, 3_600_000);
    const info = certificateInfo(issued.certificate);
    const x = new X509Certificate(issued.certificate);
    expect(info.uriSans).toEqual([ID]);
    expect(info.serial).toBe(x.serialNumber);
    expect(info.fingerprint256).toBe(x.fingerprint256);
    expect(info.notBefore.getTime()).toBe(new Date(x.validFrom).getTime());
    expect(info.notAfter.getTime()).toBe(new Date(x.validTo).getTime());
    expect(info.notAfter).toEqual(issued.notAfter);
    // The same from DER and from an X509Certificate.
    expect(certificateInfo(x.raw)).toEqual(info);
    expect(certificateInfo(x)).toEqual(info);
  });

  it('returns no URI SANs for a certificate without them', () => {
    expect(certificateInfo(ca.caPem).uriSans).toEqual([]);
  });

  it('reads GeneralizedTime (years from 2050) as well as UTCTime', () => {
    const longCa = CertificateAuthority.generate('leash.local', { validityMs: 40 * 365 * 24 * 3600 * 1000 });
    const info = certificateInfo(longCa.caPem);
    expect(info.notAfter.getUTCFullYear()).toBeGreaterThanOrEqual(2050);
    expect(info.notAfter.getTime()).toBe(new Date(longCa.certificate.validTo).getTime());
  });

  it('refuses what is not a certificate with LEASH_ERR_X509_INVALID', () => {
    expect(() => certificateInfo('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')).toThrow(X509Error);
    expect(() => certificateInfo('hello')).toThrow(expect.objectContaining({ code: 'LEASH_ERR_X509_INVALID' }));
  });
});

describe('DER helpers', () => {
  it('the strict reader refuses indefinite and non-minimal lengths and truncation', () => {
    expect(() => readTlv(Buffer.from([0x30, 0x80, 0x00, 0x00]), 0)).toThrow(/indefinite/);
    expect(() => readTlv(Buffer.from([0x04, 0x81, 0x01, 0x00]), 0)).toThrow(/non-minimal/);
    expect(() => readTlv(Buffer.from([0x04, 0x05, 0x00]), 0)).toThrow(/truncated/);
    expect(readTlv(Buffer.from([0x04, 0x81, 0x80, ...Buffer.alloc(0x80)]), 0)).toMatchObject({ tag: 4, contentStart: 3, end: 0x83 });
  });

  it('raw() embeds DER unchanged (SPKI of both key types, a Name)', () => {
    for (const k of [generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey]) {
      const spki = k.export({ type: 'spki', format: 'der' });
      expect(der.encode(der.raw(spki)).equals(spki)).toBe(true);
    }
    const name = der.encode(encodeName('ünïcode CN', 'leash'));
    expect(der.encode(der.raw(name)).equals(name)).toBe(true);
  });

  it('uint() encodes positive minimal INTEGERs', () => {
    expect(der.encode(der.uint(Buffer.from([0x80, 0x01]))).toString('hex')).toBe('0203008001');
    expect(der.encode(der.uint(Buffer.from([0x00, 0x00, 0x7f]))).toString('hex')).toBe('02017f');
  });

  it('pemToDer wants exactly one block with the label', () => {
    const ca = CertificateAuthority.generate('leash.local');
    expect(pemToDer(ca.caPem, ['CERTIFICATE'], 'x').equals(ca.certificate.raw)).toBe(true);
    expect(() => pemToDer(ca.caPem + ca.caPem, ['CERTIFICATE'], 'x')).toThrow(/exactly one/);
    expect(() => pemToDer(ca.caPem, ['CERTIFICATE REQUEST'], 'x')).toThrow(/found 0/);
  });

  it('parseCertificateDer reads the issuer bytes of a child as the subject bytes of its CA', () => {
    const ca = CertificateAuthority.generate('leash.local');
    const leaf = ca.signCsr(createCsr(createIdentityKey(), 'x'), ID, 60_000);
    const p = parseCertificateDer(new X509Certificate(leaf.certificate).raw);
    expect(p.issuer.equals(parseCertificateDer(ca.certificate.raw).subject)).toBe(true);
  });
});
