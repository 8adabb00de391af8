import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, CLOCK_SKEW_MS, parseSpiffeId, spiffeId } from '../../src/pki/ca.js';
import {
  CA_ERROR_CODES,
  CaInvalidError,
  CertificateRequestError,
  ClientCertificateError,
  CsrInvalidError,
  KeyUnsupportedError,
  SpiffeIdError,
} from '../../src/pki/errors.js';
import { buildCertificate, type CertificateTemplate, type Issuer } from '../../src/pki/issue.js';
import { verifyClientCertificate } from '../../src/pki/verify.js';
import { LeashError } from '../../src/core/errors.js';
import { certificateInfo, createCsr, createIdentityKey, derToPem, OID, parseCertificateDer, pemToDer } from '../../src/pki/x509.js';

const TD = 'leash.local';
const ID = 'spiffe://leash.local/ns/agents/sa/doc-agent';
const HOUR = 3_600_000;

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const pkcs8 = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }) as string;
const spkiOf = (k: KeyObject) => createPublicKey(k).export({ type: 'spki', format: 'der' });

/** An identity: a fresh key, a CSR, a certificate for `id` from `ca`. */
function identity(ca: CertificateAuthority, id = ID, ttlMs = HOUR, nowMs = Date.now()) {
  const key = createIdentityKey();
  const issued = ca.signCsr(createCsr(key, 'leash-sidecar'), id, ttlMs, nowMs);
  return { key: key.privateKeyPem, cert: issued.certificate, issued };
}

/** Certificates the CA itself would never make, signed with its real key (tests of the verifier). */
function issuerOf(ca: CertificateAuthority): Issuer {
  const p = parseCertificateDer(ca.certificate.raw);
  const ski = p.extensions.get(OID.subjectKeyIdentifier)!.value.subarray(2);
  return { name: p.subject, key: createPrivateKey(ca.exportPrivateKeyPem()), keyId: ski };
}
function rogue(ca: CertificateAuthority, over: Partial<CertificateTemplate>): string {
  const now = Date.now();
  return derToPem(
    buildCertificate({
      issuer: issuerOf(ca),
      subject: { commonName: 'rogue' },
      spki: spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + HOUR),
      keyUsage: ['digitalSignature'],
      extKeyUsage: [OID.clientAuth],
      san: { uris: [ID] },
      ...over,
    }),
    'CERTIFICATE',
  );
}

/** A PKCS#10 CSR built and signed by node-forge (RSA only), optionally asking for extensions. */
function forgeCsr(privatePem: string, opts: { sans?: { type: number; value: string }[]; md?: 'sha256' | 'sha1' } = {}): string {
  const key = forge.pki.privateKeyFromPem(privatePem) as forge.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: 'admin' }]);
  if (opts.sans) {
    csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: opts.sans }, { name: 'basicConstraints', cA: true }] }]);
  }
  csr.sign(key, opts.md === 'sha1' ? forge.md.sha1.create() : forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as LeashError).code;
  }
  return undefined;
};
const refusal = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ClientCertificateError);
    expect((e as ClientCertificateError).code).toBe('LEASH_ERR_CLIENT_CERT_INVALID');
    return (e as ClientCertificateError).reason;
  }
  return undefined;
};

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let rsaPem: string; // one RSA 2048 key for the forge-made CSRs (RSA keygen is ~400 ms)

beforeAll(() => {
  ca = CertificateAuthority.generate(TD);
  otherCa = CertificateAuthority.generate(TD);
  rsaPem = pkcs8(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
});

describe('spiffeId', () => {
  it('builds and parses valid IDs', () => {
    expect(spiffeId(TD, 'ns/agents/sa/doc-agent')).toBe(ID);
    expect(spiffeId(TD, '/ns/agents/sa/doc-agent')).toBe(ID);
    expect(spiffeId('example_1.dev-x', 'A.b_C-9/x')).toBe('spiffe://example_1.dev-x/A.b_C-9/x');
    expect(parseSpiffeId(ID)).toEqual({ id: ID, trustDomain: TD, path: '/ns/agents/sa/doc-agent' });
  });

  it.each(['Leash.local', 'leash.local:8443', '', 'le ash', 'user@leash.local', 'ü.local'])('refuses trust domain %j', (td) => {
    expect(() => spiffeId(td, 'a')).toThrow(SpiffeIdError);
  });

  it.each(['', '/', 'a//b', 'a/./b', 'a/../b', '..', 'a/b/', 'a/b%20c', 'a/b?x=1', 'a/b#f', 'a/ü', 'a b'])('refuses path %j', (p) => {
    expect(codeOf(() => spiffeId(TD, p))).toBe('LEASH_ERR_SPIFFE_ID_INVALID');
  });

  it.each(['SPIFFE://leash.local/a', 'spiffe://leash.local', 'spiffe://leash.local/', 'spiffe://user@leash.local/a', 'https://leash.local/a', 'spiffe:///a', `spiffe://leash.local/${'a'.repeat(2100)}`])(
    'parseSpiffeId refuses %j',
    (id) => {
      expect(() => parseSpiffeId(id)).toThrow(SpiffeIdError);
    },
  );
});

describe('CertificateAuthority.generate', () => {
  it('makes a self-signed CA (CA:TRUE, pathlen 0, keyCertSign) valid 10 years from a minute ago', () => {
    const now = Date.now();
    const c = CertificateAuthority.generate(TD, { nowMs: now });
    const x = new X509Certificate(c.caPem);
    expect(x.ca).toBe(true);
    expect(x.checkIssued(x)).toBe(true);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.subject).toContain(`CN=leash CA ${TD}`);
    expect(c.notBefore.getTime()).toBe(Math.floor((now - CLOCK_SKEW_MS) / 1000) * 1000);
    expect((c.notAfter.getTime() - now) / (365.25 * 24 * HOUR)).toBeCloseTo(10, 2);
    const ext = parseCertificateDer(x.raw).extensions;
    expect(ext.get(OID.basicConstraints)).toEqual({ critical: true, value: Buffer.from('30060101ff020100', 'hex') });
    expect(ext.get(OID.keyUsage)).toEqual({ critical: true, value: Buffer.from('03020106', 'hex') }); // keyCertSign, cRLSign
  });

  it('takes a validity and an RSA key type', () => {
    const c = CertificateAuthority.generate(TD, { validityMs: 2 * HOUR, keyType: 'rsa-2048' });
    expect(c.certificate.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(c.notAfter.getTime() - c.notBefore.getTime()).toBeLessThanOrEqual(2 * HOUR + CLOCK_SKEW_MS);
    const { cert } = identity(c);
    expect(new X509Certificate(cert).verify(c.certificate.publicKey)).toBe(true);
    expect(codeOf(() => CertificateAuthority.generate('Bad.Domain'))).toBe('LEASH_ERR_SPIFFE_ID_INVALID');
  });
});

describe('CertificateAuthority.load', () => {
  it('loads a generated CA back (PKCS#8 and SEC1/PKCS#1 keys) and issues certificates that chain to it', () => {
    const again = CertificateAuthority.load(ca.caPem, ca.exportPrivateKeyPem(), TD);
    expect(again.caPem).toBe(ca.caPem);
    const { cert } = identity(again);
    expect(new X509Certificate(cert).checkIssued(ca.certificate)).toBe(true);
    const sec1 = createPrivateKey(ca.exportPrivateKeyPem()).export({ type: 'sec1', format: 'pem' }) as string;
    expect(CertificateAuthority.load(ca.caPem, sec1, TD).caPem).toBe(ca.caPem);
  });

  it('deriveKey: the same 32 bytes for every replica loading the CA (any key encoding), other bytes for another label or CA, never the key itself', () => {
    const sec1 = createPrivateKey(ca.exportPrivateKeyPem()).export({ type: 'sec1', format: 'pem' }) as string;
    const a = CertificateAuthority.load(ca.caPem, ca.exportPrivateKeyPem(), TD).deriveKey('join tokens');
    const b = CertificateAuthority.load(ca.caPem, sec1, TD).deriveKey('join tokens');
    expect(a).toHaveLength(32);
    expect(b.equals(a)).toBe(true);
    expect(ca.deriveKey('other').equals(a)).toBe(false);
    expect(otherCa.deriveKey('join tokens').equals(a)).toBe(false);
    const der = createPrivateKey(ca.exportPrivateKeyPem()).export({ type: 'pkcs8', format: 'der' });
    expect(der.includes(a)).toBe(false);
  });

  it('refuses a key that does not match the certificate', () => {
    expect(() => CertificateAuthority.load(ca.caPem, otherCa.exportPrivateKeyPem(), TD)).toThrow(CaInvalidError);
    expect(() => CertificateAuthority.load(ca.caPem, otherCa.exportPrivateKeyPem(), TD)).toThrow(/does not match/);
  });

  it('refuses a certificate that is not a CA, a bundle, an expired CA, an unreadable key (without echoing it)', () => {
    const server = ca.serverCertificate(['localhost'], [], HOUR);
    expect(() => CertificateAuthority.load(server.certPem, server.keyPem, TD)).toThrow(/not a CA/);
    expect(() => CertificateAuthority.load(ca.caPem + otherCa.caPem, ca.exportPrivateKeyPem(), TD)).toThrow(/exactly one/);
    const old = CertificateAuthority.generate(TD, { nowMs: Date.now() - 3 * HOUR, validityMs: HOUR });
    expect(() => CertificateAuthority.load(old.caPem, old.exportPrivateKeyPem(), TD)).toThrow(/expired/);
    const secret = 'SUPERSECRETKEYMATERIAL';
    try {
      CertificateAuthority.load(ca.caPem, `-----BEGIN PRIVATE KEY-----\n${secret}\n-----END PRIVATE KEY-----\n`, TD);
      expect.unreachable();
    } catch (e) {
      expect((e as LeashError).code).toBe('LEASH_ERR_CA_INVALID');
      expect((e as Error).message).not.toContain(secret);
    }
    expect(codeOf(() => CertificateAuthority.load('garbage', 'garbage', TD))).toBe('LEASH_ERR_CA_INVALID');
  });

  it.skipIf(!hasOpenssl)('loads a CA made by OpenSSL and its leaves verify', () => {
    const dir = mkdtempSync(join(tmpdir(), 'leash-ca-'));
    try {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/O=Example/CN=External Root',
        '-days', '2', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'),
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      ], { stdio: 'ignore' });
      const ext = CertificateAuthority.load(readFileSync(join(dir, 'c.pem'), 'utf8'), readFileSync(join(dir, 'k.pem'), 'utf8'), TD);
      const { cert } = identity(ext);
      const x = new X509Certificate(cert);
      expect(x.checkIssued(ext.certificate) && x.verify(ext.certificate.publicKey)).toBe(true);
      expect(verifyClientCertificate(x, ext.caPem, TD).identity).toBe(ID);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('signCsr', () => {
  it('issues a client leaf: URI SAN = the assigned ID, CN = last segment, CA:FALSE, clientAuth, skewed window', () => {
    const now = Date.now();
    const key = createIdentityKey();
    const issued = ca.signCsr(createCsr(key, 'leash-sidecar'), ID, 15 * 60_000, now);
    const x = new X509Certificate(issued.certificate);
    expect(x.verify(ca.certificate.publicKey)).toBe(true);
    expect(x.checkIssued(ca.certificate)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(key.privateKeyPem))).toBe(true);
    expect(x.ca).toBe(false);
    expect(x.subject).toBe('CN=doc-agent');
    expect(x.subjectAltName).toBe(`URI:${ID}`);
    expect(x.keyUsage).toEqual([OID.clientAuth]); // Node's keyUsage lists the extended key usages
    expect(issued.identity).toBe(ID);
    expect(issued.serial).toBe(x.serialNumber);
    expect(issued.fingerprint256).toBe(x.fingerprint256);
    expect(issued.notBefore.getTime()).toBe(Math.floor((now - 60_000) / 1000) * 1000);
    expect(issued.notAfter.getTime()).toBe(Math.floor((now + 15 * 60_000) / 1000) * 1000);
    expect(certificateInfo(issued.certificate)).toMatchObject({ uriSans: [ID], notBefore: issued.notBefore, notAfter: issued.notAfter });
    const ext = parseCertificateDer(x.raw).extensions;
    expect(ext.get(OID.basicConstraints)).toEqual({ critical: true, value: Buffer.from('3000', 'hex') });
    expect(ext.get(OID.keyUsage)).toEqual({ critical: true, value: Buffer.from('03020780', 'hex') }); // digitalSignature
  });

  it('gives RSA keys digitalSignature + keyEncipherment', () => {
    const x = new X509Certificate(ca.signCsr(forgeCsr(rsaPem), ID, HOUR).certificate);
    expect(parseCertificateDer(x.raw).extensions.get(OID.keyUsage)?.value.toString('hex')).toBe('030205a0');
  });

  it('ignores the SANs and extensions a CSR asks for (forge-built CSR asking for spiffe://leash.local/admin and CA:TRUE)', () => {
    const csr = forgeCsr(rsaPem, { sans: [{ type: 6, value: 'spiffe://leash.local/admin' }, { type: 2, value: 'evil.example' }] });
    expect(csr).toBeTruthy();
    const assigned = 'spiffe://leash.local/join/demo-1';
    const issued = ca.signCsr(csr, assigned, HOUR);
    const x = new X509Certificate(issued.certificate);
    expect(x.subjectAltName).toBe(`URI:${assigned}`);
    expect(certificateInfo(x).uriSans).toEqual([assigned]);
    expect(x.ca).toBe(false);
    expect(x.subject).toBe('CN=demo-1');
  });

  it('uses random positive 128-bit serials, never repeated', () => {
    const serials = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const s = identity(ca).issued.serial;
      expect(s).toMatch(/^[0-7][0-9A-F]{31}$/);
      serials.add(s);
    }
    expect(serials.size).toBe(30);
  });

  it('refuses a tampered CSR: changed subject, changed signature, swapped public key', () => {
    const key = createIdentityKey();
    const good = pemToDer(createCsr(key, 'leash-sidecar'), ['CERTIFICATE REQUEST'], 'csr');
    const pem = (b: Buffer) => derToPem(b, 'CERTIFICATE REQUEST');

    const renamed = Buffer.from(good);
    const at = renamed.indexOf('leash-sidecar');
    renamed[at] = 'L'.charCodeAt(0);
    expect(() => ca.signCsr(pem(renamed), ID, HOUR)).toThrow(/does not verify/);

    const badSig = Buffer.from(good);
    badSig[badSig.length - 1] = badSig[badSig.length - 1]! ^ 0x01;
    expect(codeOf(() => ca.signCsr(pem(badSig), ID, HOUR))).toBe('LEASH_ERR_CSR_INVALID');

    // Proof of possession: someone else's public key with our signature.
    const mine = spkiOf(createPrivateKey(key.privateKeyPem));
    const theirs = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const swapped = Buffer.from(good);
    expect(good.indexOf(mine)).toBeGreaterThan(0);
    swapped.set(theirs, good.indexOf(mine));
    expect(() => ca.signCsr(pem(swapped), ID, HOUR)).toThrow(CsrInvalidError);
    expect(() => ca.signCsr(pem(swapped), ID, HOUR)).toThrow(/does not verify/);

    const rsaCsr = pemToDer(forgeCsr(rsaPem), ['CERTIFICATE REQUEST'], 'csr');
    rsaCsr[rsaCsr.length - 5] = rsaCsr[rsaCsr.length - 5]! ^ 0x40;
    expect(() => ca.signCsr(pem(rsaCsr), ID, HOUR)).toThrow(/does not verify/);
  });

  it('refuses malformed CSRs', () => {
    const good = pemToDer(createCsr(createIdentityKey(), 'x'), ['CERTIFICATE REQUEST'], 'csr');
    for (const bad of [
      'not a csr',
      '',
      derToPem(Buffer.concat([good, Buffer.from([0])]), 'CERTIFICATE REQUEST'), // trailing byte
      derToPem(good.subarray(0, good.length - 3), 'CERTIFICATE REQUEST'), // truncated
      derToPem(good, 'CERTIFICATE'), // wrong label
      createCsr(createIdentityKey(), 'x') + createCsr(createIdentityKey(), 'y'), // two
      'A'.repeat(20_000),
    ]) {
      expect(codeOf(() => ca.signCsr(bad, ID, HOUR)), bad.slice(0, 40)).toBe('LEASH_ERR_CSR_INVALID');
    }
  });

  it('refuses weak or unexpected keys and SHA-1 signatures', () => {
    const csrFor = (k: KeyObject) => createCsr({ privateKeyPem: pkcs8(k) }, 'x');
    expect(() => ca.signCsr(csrFor(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey), ID, HOUR)).toThrow(KeyUnsupportedError);
    expect(codeOf(() => ca.signCsr(csrFor(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey), ID, HOUR))).toBe('LEASH_ERR_KEY_UNSUPPORTED');
    expect(codeOf(() => ca.signCsr(csrFor(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey), ID, HOUR))).toBeDefined();
    expect(() => ca.signCsr(csrFor(generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).privateKey), ID, HOUR)).toThrow(/exponent/);
    expect(() => ca.signCsr(forgeCsr(rsaPem, { md: 'sha1' }), ID, HOUR)).toThrow(/unsupported CSR signature algorithm 1\.2\.840\.113549\.1\.1\.5/);
  });

  it('refuses IDs outside its trust domain, invalid IDs, bad TTLs, its own key', () => {
    const csr = createCsr(createIdentityKey(), 'x');
    expect(() => ca.signCsr(csr, 'spiffe://other.local/a', HOUR)).toThrow(SpiffeIdError);
    expect(codeOf(() => ca.signCsr(csr, 'spiffe://leash.local/../admin', HOUR))).toBe('LEASH_ERR_SPIFFE_ID_INVALID');
    for (const ttl of [0, -1, 999, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(codeOf(() => ca.signCsr(csr, ID, ttl))).toBe('LEASH_ERR_CERT_REQUEST_INVALID');
    }
    expect(() => ca.signCsr(createCsr({ privateKeyPem: ca.exportPrivateKeyPem() }, 'x'), ID, HOUR)).toThrow(CertificateRequestError);
  });

  it("caps notAfter at the CA's own notAfter and refuses once the CA has expired", () => {
    const short = CertificateAuthority.generate(TD, { validityMs: 2 * HOUR });
    const issued = short.signCsr(createCsr(createIdentityKey(), 'x'), ID, 24 * HOUR);
    expect(issued.notAfter).toEqual(short.notAfter);
    expect(() => short.signCsr(createCsr(createIdentityKey(), 'x'), ID, HOUR, Date.now() + 3 * HOUR)).toThrow(CaInvalidError);
  });
});

describe('serverCertificate', () => {
  it('certifies host names and IP addresses (v4 and v6) for serverAuth', () => {
    const s = ca.serverCertificate(['localhost', 'Leash-Authority.leash.svc'], ['127.0.0.1', '::1', '2001:db8::8:800:200c:417a', '::ffff:10.0.0.1'], HOUR);
    const x = new X509Certificate(s.certPem);
    expect(x.verify(ca.certificate.publicKey)).toBe(true);
    expect(x.checkPrivateKey(createPrivateKey(s.keyPem))).toBe(true);
    expect(x.checkHost('localhost')).toBe('localhost');
    expect(x.checkHost('leash-authority.leash.svc')).toBe('leash-authority.leash.svc');
    for (const ip of ['127.0.0.1', '::1', '2001:db8::8:800:200c:417a', '::ffff:10.0.0.1']) expect(x.checkIP(ip), ip).toBe(ip);
    expect(x.checkIP('10.0.0.2')).toBeUndefined();
    expect(x.keyUsage).toEqual([OID.serverAuth]);
    expect(x.ca).toBe(false);
  });

  it('refuses wildcards, bad names, bad addresses and an empty list', () => {
    for (const [h, ips] of [[['*.leash.svc'], []], [['a_b'], []], [['127.0.0.1'], []], [['-x'], []], [[''], []], [[], ['1.2.3']], [[], ['localhost']], [[], []]] as [string[], string[]][]) {
      expect(codeOf(() => ca.serverCertificate(h, ips, HOUR)), JSON.stringify([h, ips])).toBe('LEASH_ERR_CERT_REQUEST_INVALID');
    }
  });
});

describe('verifyClientCertificate', () => {
  it('returns the identity for a certificate the CA issued (X509Certificate, DER or PEM; CA as PEM, object or bundle)', () => {
    const { cert, issued } = identity(ca);
    const x = new X509Certificate(cert);
    const v = verifyClientCertificate(x, ca.caPem, TD);
    expect(v).toEqual({ identity: ID, serial: issued.serial, notBefore: issued.notBefore, notAfter: issued.notAfter, fingerprint256: issued.fingerprint256 });
    expect(verifyClientCertificate(x.raw, ca.certificate, TD).identity).toBe(ID);
    expect(verifyClientCertificate(cert, otherCa.caPem + ca.caPem, TD).identity).toBe(ID);
    expect(verifyClientCertificate(cert, [otherCa.certificate, ca.certificate], TD).identity).toBe(ID);
  });

  it('never treats a non-CA certificate as a trust anchor', () => {
    const { cert } = identity(ca);
    expect(refusal(() => verifyClientCertificate(cert, cert, TD))).toBe('untrusted');
    expect(refusal(() => verifyClientCertificate(cert, new X509Certificate(cert), TD))).toBe('untrusted');
  });

  it('refuses a certificate from another CA (forged)', () => {
    expect(refusal(() => verifyClientCertificate(identity(otherCa).cert, ca.caPem, TD))).toBe('untrusted');
  });

  it('refuses outside the validity window', () => {
    const { cert, issued } = identity(ca);
    expect(refusal(() => verifyClientCertificate(cert, ca.caPem, TD, issued.notAfter.getTime()))).toBe('expired');
    expect(refusal(() => verifyClientCertificate(cert, ca.caPem, TD, issued.notBefore.getTime() - 1))).toBe('not_yet_valid');
    expect(verifyClientCertificate(cert, ca.caPem, TD, issued.notAfter.getTime() - 1).identity).toBe(ID);
  });

  it('refuses the wrong trust domain', () => {
    expect(refusal(() => verifyClientCertificate(identity(ca).cert, ca.caPem, 'other.local'))).toBe('trust_domain');
    expect(refusal(() => verifyClientCertificate(rogue(ca, { san: { uris: ['spiffe://evil.local/ns/a'] } }), ca.caPem, TD))).toBe('trust_domain');
  });

  it('refuses a CA certificate used as a leaf (the CA itself, or a CA:TRUE cert with a valid SPIFFE ID)', () => {
    expect(refusal(() => verifyClientCertificate(ca.caPem, ca.caPem, TD))).toBe('ca_certificate');
    expect(refusal(() => verifyClientCertificate(rogue(ca, { caPathLen: 0, keyUsage: ['keyCertSign', 'digitalSignature'] }), ca.caPem, TD))).toBe('ca_certificate');
  });

  it('refuses a missing URI SAN, two URI SANs, a URI that is not a SPIFFE ID', () => {
    expect(refusal(() => verifyClientCertificate(rogue(ca, { san: undefined }), ca.caPem, TD))).toBe('uri_san');
    expect(refusal(() => verifyClientCertificate(rogue(ca, { san: { dnsNames: ['leash.local'] } }), ca.caPem, TD))).toBe('uri_san');
    expect(refusal(() => verifyClientCertificate(rogue(ca, { san: { uris: [ID, 'spiffe://leash.local/admin'] } }), ca.caPem, TD))).toBe('uri_san');
    expect(refusal(() => verifyClientCertificate(rogue(ca, { san: { uris: ['https://leash.local/ns/a'] } }), ca.caPem, TD))).toBe('spiffe_id');
  });

  it('refuses a certificate not meant for client authentication (the server certificate)', () => {
    expect(refusal(() => verifyClientCertificate(ca.serverCertificate(['localhost'], [], HOUR).certPem, ca.caPem, TD))).toBe('not_client_auth');
    expect(refusal(() => verifyClientCertificate(rogue(ca, { extKeyUsage: undefined }), ca.caPem, TD))).toBe('not_client_auth');
  });

  it('refuses nothing and garbage as malformed', () => {
    expect(refusal(() => verifyClientCertificate(undefined, ca.caPem, TD))).toBe('malformed');
    expect(refusal(() => verifyClientCertificate(Buffer.alloc(0), ca.caPem, TD))).toBe('malformed');
    expect(refusal(() => verifyClientCertificate(Buffer.from('30030201ff', 'hex'), ca.caPem, TD))).toBe('malformed');
  });
});

describe('mTLS handshake (https requestCert + ca, then verifyClientCertificate)', () => {
  let server: https.Server;
  let port: number;
  let reached = 0;

  beforeAll(async () => {
    const s = ca.serverCertificate(['localhost'], ['127.0.0.1'], HOUR);
    server = https.createServer({ cert: s.certPem, key: s.keyPem, ca: ca.caPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      reached++;
      try {
        const v = verifyClientCertificate((req.socket as TLSSocket).getPeerX509Certificate(), ca.caPem, TD);
        res.end(v.identity);
      } catch (e) {
        res.statusCode = 403;
        res.end((e as ClientCertificateError).reason);
      }
    });
    server.on('tlsClientError', () => {}); // refused handshakes are expected here
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  function call(client: { cert?: string; key?: string; servername?: string; port?: number }): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/', ca: ca.caPem, agent: false, ...client }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('accepts the identity the CA issued (EC key; server checked by IP SAN and by host name)', async () => {
    const { cert, key } = identity(ca);
    expect(await call({ cert, key })).toEqual({ status: 200, body: ID });
    expect(await call({ cert, key, servername: 'localhost' })).toEqual({ status: 200, body: ID });
  });

  it('accepts an RSA identity from a forge-built CSR', async () => {
    const issued = ca.signCsr(forgeCsr(rsaPem), 'spiffe://leash.local/join/demo-1', HOUR);
    expect(await call({ cert: issued.certificate, key: rsaPem })).toEqual({ status: 200, body: 'spiffe://leash.local/join/demo-1' });
  });

  it('refuses a certificate signed by another CA, an expired one, the server certificate, and none at all', async () => {
    const before = reached;
    const forged = identity(otherCa);
    const expired = identity(ca, ID, HOUR, Date.now() - 2 * HOUR);
    expect(expired.issued.notAfter.getTime()).toBeLessThan(Date.now());
    const serverCert = ca.serverCertificate(['localhost'], [], HOUR);
    // Node's TLS server destroys the socket after the handshake when the client is not authorized.
    await expect(call({ cert: forged.cert, key: forged.key })).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(call({ cert: expired.cert, key: expired.key })).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(call({ cert: serverCert.certPem, key: serverCert.keyPem })).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(call({})).rejects.toMatchObject({ code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' });
    expect(reached).toBe(before); // none got past TLS
  });

  it('TLS refuses each for the right reason (authorizationError, seen on a non-rejecting server)', async () => {
    const s = ca.serverCertificate(['localhost'], ['127.0.0.1'], HOUR);
    const seen: (string | null)[] = [];
    const diag = https.createServer({ cert: s.certPem, key: s.keyPem, ca: ca.caPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const sock = req.socket as TLSSocket;
      seen.push(sock.authorized ? null : String(sock.authorizationError));
      res.end();
    });
    diag.listen(0, '127.0.0.1');
    await once(diag, 'listening');
    const diagPort = (diag.address() as AddressInfo).port;
    try {
      const forged = identity(otherCa);
      const expired = identity(ca, ID, HOUR, Date.now() - 2 * HOUR);
      const serverCert = ca.serverCertificate(['localhost'], [], HOUR);
      const good = identity(ca);
      for (const c of [forged, expired, { cert: serverCert.certPem, key: serverCert.keyPem }, good]) {
        await call({ ...c, port: diagPort });
      }
      // The forged leaf names our CA as issuer (same subject), so OpenSSL finds it and the signature fails.
      expect(seen).toEqual(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED', 'INVALID_PURPOSE', null]);
    } finally {
      diag.closeAllConnections();
      diag.close();
    }
  });

  it('a CA:TRUE certificate with a valid SPIFFE ID passes TLS, and verifyClientCertificate refuses it', async () => {
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const cert = rogue(ca, { caPathLen: 0, keyUsage: ['keyCertSign', 'digitalSignature'], spki: spkiOf(key) });
    // Measured on Node 20.20 / OpenSSL 3: the handshake accepts it; only the defence-in-depth check catches it.
    expect(await call({ cert, key: pkcs8(key) })).toEqual({ status: 403, body: 'ca_certificate' });
  });
});

describe('error codes', () => {
  it('every CA error class has its own listed code and is a LeashError', () => {
    const made = [
      new CsrInvalidError('m'),
      new KeyUnsupportedError('m'),
      new SpiffeIdError('m'),
      new CaInvalidError('m'),
      new CertificateRequestError('m'),
      new ClientCertificateError('untrusted', 'm'),
    ];
    for (const e of made) expect(e).toBeInstanceOf(LeashError);
    expect(made.map((e) => e.code).sort()).toEqual([...CA_ERROR_CODES].sort());
    expect(new ClientCertificateError('expired', 'm').context).toMatchObject({ reason: 'expired' });
  });
});
