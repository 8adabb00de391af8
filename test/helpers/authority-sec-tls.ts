import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { request } from 'node:https';
import type { CertificateAuthority } from '../../src/pki/ca.js';
import { buildCertificate, type CertificateTemplate, type Issuer } from '../../src/pki/issue.js';
import { createCsr, createIdentityKey, derToPem, OID, parseCertificateDer } from '../../src/pki/x509.js';

/**
 * Helpers for the authority security suite: a raw HTTPS JSON call with an optional TLS
 * client identity (no agent, no pooling: every call is its own handshake, so a refused
 * certificate can never ride on an accepted connection), and certificates signed with a
 * real CA key that the CA itself would never issue.
 */

export interface TlsIdentity {
  cert: string;
  key: string;
}

export interface CallResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** Parsed JSON, or undefined if the body is not JSON. */
  json: unknown;
}

export interface CallOptions {
  identity?: TlsIdentity | undefined;
  /** JSON-encoded unless `raw` is given. */
  body?: unknown;
  raw?: string | Buffer;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export function call(baseUrl: string, caPem: string, method: string, path: string, opts: CallOptions = {}): Promise<CallResult> {
  const data = opts.raw !== undefined ? opts.raw : opts.body !== undefined ? JSON.stringify(opts.body) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, baseUrl),
      {
        method,
        agent: false,
        ca: caPem,
        cert: opts.identity?.cert,
        key: opts.identity?.key,
        timeout: opts.timeoutMs ?? 5_000,
        headers: {
          ...(data !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

/** `{error:{code}}` of an answer, or undefined. */
export const errorCode = (r: CallResult): unknown => (r.json as { error?: { code?: unknown } } | undefined)?.error?.code;
export const errorMessage = (r: CallResult): unknown => (r.json as { error?: { message?: unknown } } | undefined)?.error?.message;

/** A fresh EC P-256 key and its CSR, as the sidecar makes them. */
export function keyAndCsr(): { key: string; csr: string } {
  const k = createIdentityKey();
  return { key: k.privateKeyPem, csr: createCsr(k, 'leash-sidecar') };
}

/** An identity certificate for `spiffeId`, signed by `ca` at `nowMs` (in the past or future for time tests). */
export function signedBy(ca: CertificateAuthority, spiffeId: string, ttlMs: number, nowMs = Date.now()): TlsIdentity {
  const { key, csr } = keyAndCsr();
  return { key, cert: ca.signCsr(csr, spiffeId, ttlMs, nowMs).certificate };
}

/** The CA's real signing key and name, for certificates signCsr would refuse to make. */
export function issuerOf(ca: CertificateAuthority): Issuer {
  const p = parseCertificateDer(ca.certificate.raw);
  const ski = p.extensions.get(OID.subjectKeyIdentifier)!.value.subarray(2); // OCTET STRING header
  return { name: p.subject, key: createPrivateKey(ca.exportPrivateKeyPem()), keyId: ski };
}

const spkiOf = (k: KeyObject) => createPublicKey(k).export({ type: 'spki', format: 'der' });

/** A certificate signed with `ca`'s own key, built from a template override (e.g. CA:TRUE). */
export function rogueIdentity(ca: CertificateAuthority, spiffeId: string, over: Partial<CertificateTemplate>): TlsIdentity {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const now = Date.now();
  const der = buildCertificate({
    issuer: issuerOf(ca),
    subject: { commonName: 'rogue' },
    spki: spkiOf(key),
    notBefore: new Date(Math.floor((now - 60_000) / 1000) * 1000),
    notAfter: new Date(Math.floor((now + 3_600_000) / 1000) * 1000),
    keyUsage: ['digitalSignature'],
    extKeyUsage: [OID.clientAuth],
    san: { uris: [spiffeId] },
    ...over,
  });
  return { cert: derToPem(der, 'CERTIFICATE'), key: key.export({ type: 'pkcs8', format: 'pem' }) as string };
}

export { sleep } from './wait.js';
