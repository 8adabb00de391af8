import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';

/**
 * A throwaway PKI for HTTPS upstreams: keys from node:crypto (forge's pure-JS keygen
 * blocks the event loop, docs/pitfalls.md), certificates built with node-forge.
 */
export interface TestCa {
  certPem: string;
  keyPem: string;
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
}

export interface ServerCert {
  certPem: string;
  keyPem: string;
}

function rsaKeys(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function serial(): string {
  // Positive, non-zero leading nibble.
  return `1${randomBytes(15).toString('hex')}`;
}

function validity(cert: forge.pki.Certificate): void {
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3_600_000);
}

export function makeCa(commonName = 'leash test CA'): TestCa {
  const keys = rsaKeys();
  const key = forge.pki.privateKeyFromPem(keys.privatePem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  validity(cert);
  const name = [{ name: 'commonName', value: commonName }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem, cert, key };
}

/** A server certificate for 127.0.0.1 / localhost, signed by `ca`. */
export function issueServerCert(ca: TestCa, names: { ips?: string[]; dns?: string[] } = { ips: ['127.0.0.1'], dns: ['localhost'] }): ServerCert {
  const keys = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicPem);
  cert.serialNumber = serial();
  validity(cert);
  cert.setSubject([{ name: 'commonName', value: names.dns?.[0] ?? names.ips?.[0] ?? 'server' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  const altNames = [...(names.dns ?? []).map((value) => ({ type: 2, value })), ...(names.ips ?? []).map((ip) => ({ type: 7, ip }))];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

/** For the tests of an HTTPS upstream's verification: its CA, its certificate, and a CA that did not issue it. */
export interface VerifyPki {
  ca: TestCa;
  otherCa: TestCa;
  /** Issued by `ca` for 127.0.0.1 and localhost. */
  serverCert: ServerCert;
  /** `serverCert` as a TLS server's options take it. */
  tls: { key: string; cert: string };
}

export function verifyPki(caName: string, otherCaName: string): VerifyPki {
  const ca = makeCa(caName);
  const otherCa = makeCa(otherCaName);
  const serverCert = issueServerCert(ca, { ips: ['127.0.0.1'], dns: ['localhost'] });
  return { ca, otherCa, serverCert, tls: { key: serverCert.keyPem, cert: serverCert.certPem } };
}

/** Two CAs' certificates as files in a fresh temporary folder, for routes' caFile. */
export interface CaFiles {
  /** The file of the CA that issued the upstream's certificate. */
  caPath: string;
  /** The file of a CA that did not. */
  otherPath: string;
  /** Both files by path, as startSidecar's `caFiles` reads them. */
  caFiles: Map<string, string>;
  /** Deletes the folder. */
  remove(): void;
}

/** `pki`'s two CAs as files in a fresh folder named from `prefix`. */
export function writeCaFiles(prefix: string, { ca, otherCa }: { ca: TestCa; otherCa: TestCa }): CaFiles {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const caPath = join(dir, 'ca.pem');
  const otherPath = join(dir, 'other-ca.pem');
  writeFileSync(caPath, ca.certPem);
  writeFileSync(otherPath, otherCa.certPem);
  return {
    caPath,
    otherPath,
    caFiles: new Map([
      [caPath, ca.certPem],
      [otherPath, otherCa.certPem],
    ]),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * The three ways a route can verify `upstream` (HTTPS): `privateca` with caFile the CA that
 * issued its certificate, `systemroots` with no caFile, `wrongca` with another CA's; each
 * route otherwise `route`.
 */
export function verifyingRoutes(upstream: string, route: Record<string, unknown>, files: CaFiles): Record<string, Record<string, unknown>> {
  return {
    privateca: { upstream, ...route, caFile: files.caPath },
    systemroots: { upstream, ...route },
    wrongca: { upstream, ...route, caFile: files.otherPath },
  };
}
