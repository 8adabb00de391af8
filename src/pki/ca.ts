/**
 * The authority's certificate authority: it turns a sidecar's CSR into a short-lived
 * identity certificate (an X.509-SVID-like client certificate whose only URI SAN is the
 * SPIFFE ID the authority assigned), and makes the certificate of the authority's own
 * HTTPS listener. Keys come from node:crypto; structures are built with node-forge's DER
 * encoder (src/pki/x509.ts); every certificate is checked with Node's X509Certificate
 * before it leaves here.
 */
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { contentOf, derToPem, describeKey, OID, parseCertificateDer, pemToDer, readWhole, TAG } from './x509.js';
import { verifyCsr } from './csr.js';
import { CaInvalidError, CertificateRequestError, SpiffeIdError } from './errors.js';
import { buildCertificate, toCertTime, validateHostname, ipBytes, type Issuer, type KeyUsage } from './issue.js';
import { parseSpiffeId, validateTrustDomain } from './spiffe.js';

export { spiffeId, parseSpiffeId, validateTrustDomain, type SpiffeId } from './spiffe.js';

export type CaKeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';

export interface GenerateCaOptions {
  /** Default 'ec-p256' (fast to make and to sign with; every TLS stack accepts it). */
  keyType?: CaKeyType;
  /** Default 10 years. */
  validityMs?: number;
  /** Default "leash CA <trustDomain>". */
  commonName?: string;
  /** Default Date.now(). */
  nowMs?: number;
}

export interface IssuedCertificate {
  /** The SPIFFE ID in the certificate's only URI SAN. */
  identity: string;
  /** PEM leaf certificate. */
  certificate: string;
  /** Upper-case hex, as X509Certificate#serialNumber. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** As X509Certificate#fingerprint256 (colon-separated hex). */
  fingerprint256: string;
}

export interface ServerCertificate {
  certPem: string;
  /** PKCS#8 PEM of a fresh EC P-256 key. */
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** Clients and servers disagree on the time by a little; back-date notBefore by this much. */
export const CLOCK_SKEW_MS = 60_000;
const TEN_YEARS_MS = 10 * 365.25 * 24 * 3600 * 1000;
/** A loaded CA whose notBefore is this far in the future is refused. */
const CA_NOT_YET_VALID_TOLERANCE_MS = 5 * 60_000;

export class CertificateAuthority {
  readonly trustDomain: string;
  /** PEM of the CA certificate: what sidecars and admin clients trust. */
  readonly caPem: string;
  readonly certificate: X509Certificate;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly #key: KeyObject;
  readonly #spki: Buffer;
  readonly #issuer: Issuer;

  private constructor(trustDomain: string, certDer: Buffer, key: KeyObject) {
    this.trustDomain = trustDomain;
    this.certificate = new X509Certificate(certDer);
    this.caPem = derToPem(certDer, 'CERTIFICATE');
    const parsed = parseCertificateDer(certDer);
    this.notBefore = parsed.notBefore;
    this.notAfter = parsed.notAfter;
    this.#key = key;
    this.#spki = publicSpki(key);
    const ski = parsed.extensions.get(OID.subjectKeyIdentifier);
    this.#issuer = { name: parsed.subject, key, keyId: ski ? contentOf(ski.value, readWhole(ski.value, TAG.OCTETSTRING, 'subjectKeyIdentifier')) : undefined };
  }

  /** A new self-signed CA (dev mode, tests). Its key exists only in memory unless exported. */
  static generate(trustDomain: string, opts: GenerateCaOptions = {}): CertificateAuthority {
    validateTrustDomain(trustDomain);
    const nowMs = opts.nowMs ?? Date.now();
    const validityMs = opts.validityMs ?? TEN_YEARS_MS;
    if (!(validityMs > CLOCK_SKEW_MS) || !Number.isFinite(validityMs)) throw new CertificateRequestError('CA validity must be longer than a minute');
    if (opts.commonName !== undefined && (opts.commonName.length === 0 || opts.commonName.length > 64)) {
      throw new CertificateRequestError('CA common name must be 1 to 64 characters');
    }
    const key = generateCaKey(opts.keyType ?? 'ec-p256');
    const certDer = buildCertificate({
      selfKey: key,
      subject: { commonName: opts.commonName ?? `leash CA ${trustDomain}`.slice(0, 64), organization: 'leash' },
      spki: publicSpki(key),
      notBefore: toCertTime(nowMs - CLOCK_SKEW_MS),
      notAfter: toCertTime(nowMs + validityMs),
      caPathLen: 0, // issues leaves only, never another CA
      keyUsage: ['keyCertSign', 'cRLSign'],
    });
    return new CertificateAuthority(trustDomain, certDer, key);
  }

  /**
   * An operator's CA: one self-signed CA certificate and its unencrypted private key
   * (PKCS#8, PKCS#1 or SEC1 PEM). Refused with CaInvalidError unless the certificate is a
   * CA allowed to sign certificates, the key is the certificate's own, the key type is
   * usable (RSA ≥ 2048, EC P-256/P-384) and the certificate is valid at nowMs.
   */
  static load(certPem: string, keyPem: string, trustDomain: string, opts: { nowMs?: number } = {}): CertificateAuthority {
    validateTrustDomain(trustDomain);
    const nowMs = opts.nowMs ?? Date.now();
    let certDer: Buffer, cert: X509Certificate;
    try {
      certDer = pemToDer(certPem, ['CERTIFICATE'], 'CA certificate');
      cert = new X509Certificate(certDer);
    } catch (cause) {
      throw new CaInvalidError('CA certificate: expected exactly one readable PEM CERTIFICATE', {}, { cause });
    }
    if (!cert.ca) throw new CaInvalidError('CA certificate is not a CA (basicConstraints CA:TRUE missing)', { subject: cert.subject });
    const parsed = parseCertificateDer(certDer);
    const ku = parsed.extensions.get(OID.keyUsage);
    if (ku && !hasKeyUsageBit(ku.value, 5)) throw new CaInvalidError('CA certificate keyUsage lacks keyCertSign', { subject: cert.subject });
    if (!cert.checkIssued(cert) || !cert.verify(cert.publicKey)) {
      // An intermediate would work only where peers enable partial-chain verification.
      throw new CaInvalidError('CA certificate must be self-signed (a root), so peers can use it as their trust anchor', { subject: cert.subject });
    }
    if (parsed.notAfter.getTime() <= nowMs) throw new CaInvalidError(`CA certificate expired at ${parsed.notAfter.toISOString()}`);
    if (parsed.notBefore.getTime() > nowMs + CA_NOT_YET_VALID_TOLERANCE_MS) throw new CaInvalidError(`CA certificate is not valid before ${parsed.notBefore.toISOString()}`);
    let key: KeyObject;
    try {
      key = createPrivateKey(keyPem);
    } catch (cause) {
      // Never echo the key material; Node's message names only the format problem.
      throw new CaInvalidError('CA key cannot be read (an unencrypted PEM private key is required)', {}, { cause });
    }
    if (!cert.checkPrivateKey(key)) throw new CaInvalidError('CA key does not match the CA certificate', { subject: cert.subject });
    checkCaKey(key);
    return new CertificateAuthority(trustDomain, certDer, key);
  }

  /**
   * Issue the identity certificate for `spiffeId` to the holder of the CSR's key.
   * Only the CSR's public key is used (after its self-signature verifies); whatever
   * subject, SANs or extensions it asks for are ignored. notBefore is back-dated by
   * CLOCK_SKEW_MS; notAfter is nowMs + ttlMs, capped at the CA's own notAfter.
   */
  signCsr(csrPem: string, spiffeId: string, ttlMs: number, nowMs: number = Date.now()): IssuedCertificate {
    const id = parseSpiffeId(spiffeId);
    if (id.trustDomain !== this.trustDomain) {
      throw new SpiffeIdError(`SPIFFE ID ${spiffeId} is outside this CA's trust domain ${this.trustDomain}`, { identity: spiffeId });
    }
    const window = this.#window(ttlMs, nowMs);
    const { publicKey, spki } = verifyCsr(csrPem);
    if (spki.equals(this.#spki)) throw new CertificateRequestError("refusing to certify the CA's own key");
    const segments = id.path.split('/');
    const keyUsage: KeyUsage[] = publicKey.asymmetricKeyType === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'];
    const certDer = buildCertificate({
      issuer: this.#issuer,
      subject: { commonName: segments[segments.length - 1]!.slice(0, 64) },
      spki,
      ...window,
      keyUsage,
      extKeyUsage: [OID.clientAuth],
      san: { uris: [id.id] },
    });
    const cert = this.#selfCheck(certDer);
    return { identity: id.id, certificate: derToPem(certDer, 'CERTIFICATE'), serial: cert.serialNumber, ...window, fingerprint256: cert.fingerprint256 };
  }

  /** A certificate and fresh key for the authority's own HTTPS listener (serverAuth). */
  /**
   * A 32-byte key for `label`, derived from the CA's private key (HMAC-SHA256 keyed by its
   * PKCS#8 DER): the same on every authority replica sharing this CA, unknown to anything
   * that does not hold the CA key (sidecars, Redis). The key itself never leaves.
   */
  deriveKey(label: string): Buffer {
    const der = this.#key.export({ type: 'pkcs8', format: 'der' });
    return createHmac('sha256', der).update(`leash derived key v1\n${label}`, 'utf8').digest();
  }

  serverCertificate(hostnames: readonly string[], ipAddresses: readonly string[], ttlMs: number, nowMs: number = Date.now()): ServerCertificate {
    const dnsNames = hostnames.map(validateHostname);
    ipAddresses.forEach(ipBytes); // validates
    const first = dnsNames[0] ?? ipAddresses[0];
    if (first === undefined) throw new CertificateRequestError('a server certificate needs at least one host name or IP address');
    const window = this.#window(ttlMs, nowMs);
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const certDer = buildCertificate({
      issuer: this.#issuer,
      subject: { commonName: first.slice(0, 64) },
      spki: publicSpki(privateKey),
      ...window,
      keyUsage: ['digitalSignature'],
      extKeyUsage: [OID.serverAuth],
      san: { dnsNames, ipAddresses },
    });
    this.#selfCheck(certDer);
    return { certPem: derToPem(certDer, 'CERTIFICATE'), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, ...window };
  }

  /** The CA private key as PKCS#8 PEM — only for persisting a generated dev CA. Never log it. */
  exportPrivateKeyPem(): string {
    return this.#key.export({ type: 'pkcs8', format: 'pem' }) as string;
  }

  #window(ttlMs: number, nowMs: number): { notBefore: Date; notAfter: Date } {
    if (!Number.isFinite(ttlMs) || ttlMs < 1000) throw new CertificateRequestError(`certificate TTL must be at least 1 s (got ${ttlMs} ms)`);
    if (!Number.isFinite(nowMs)) throw new CertificateRequestError('nowMs must be a finite number');
    if (nowMs >= this.notAfter.getTime()) throw new CaInvalidError(`CA certificate expired at ${this.notAfter.toISOString()}`);
    return { notBefore: toCertTime(nowMs - CLOCK_SKEW_MS), notAfter: toCertTime(Math.min(nowMs + ttlMs, this.notAfter.getTime())) };
  }

  /** Defence against our own encoder: what we hand out must chain to us under Node's checks. */
  #selfCheck(certDer: Buffer): X509Certificate {
    const cert = new X509Certificate(certDer);
    if (!cert.checkIssued(this.certificate) || !cert.verify(this.certificate.publicKey)) {
      throw new CaInvalidError('internal error: an issued certificate does not verify against the CA');
    }
    return cert;
  }
}

/**
 * CA certificates trusted for client certificates besides the signing CA (config
 * `ca.trustedCertFiles`: the next CA before a switch, the previous one after it). Each
 * PEM block must be a self-signed CA certificate, currently valid: anything else is
 * refused with CaInvalidError naming `where`, as a silently ignored block would leave a
 * fleet's identities refused at the switch.
 */
export function trustedCaCertificates(pem: string, where: string, nowMs: number = Date.now()): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new CaInvalidError(`${where}: holds no PEM certificate`);
  return blocks.map((block, i) => {
    const at = blocks.length > 1 ? `${where} (certificate ${i + 1})` : where;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch (cause) {
      throw new CaInvalidError(`${at}: not a readable certificate`, {}, { cause });
    }
    if (!cert.ca) throw new CaInvalidError(`${at}: not a CA certificate (basicConstraints CA:TRUE missing)`, { subject: cert.subject });
    if (!cert.checkIssued(cert) || !cert.verify(cert.publicKey)) throw new CaInvalidError(`${at}: not self-signed (a root is required)`, { subject: cert.subject });
    if (new Date(cert.validTo).getTime() <= nowMs) throw new CaInvalidError(`${at}: expired at ${new Date(cert.validTo).toISOString()}`, { subject: cert.subject });
    return cert;
  });
}

function generateCaKey(type: CaKeyType): KeyObject {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return generateKeyPairSync('rsa', { modulusLength: Number(type.slice(4)) }).privateKey;
    default:
      throw new CertificateRequestError(`unknown CA key type ${String(type)}`);
  }
}

function checkCaKey(key: KeyObject): void {
  const d = key.asymmetricKeyDetails;
  const ok =
    (key.asymmetricKeyType === 'rsa' && (d?.modulusLength ?? 0) >= 2048) ||
    (key.asymmetricKeyType === 'ec' && (d?.namedCurve === 'prime256v1' || d?.namedCurve === 'secp384r1'));
  if (!ok) throw new CaInvalidError(`unsupported CA key ${describeKey(key)}: use RSA >= 2048 or EC P-256/P-384`);
}

const publicSpki = (key: KeyObject): Buffer => createPublicKey(key).export({ type: 'spki', format: 'der' });

/** keyUsage is a BIT STRING; bit n counts from the most significant bit of the first octet. */
function hasKeyUsageBit(value: Buffer, bit: number): boolean {
  const t = readWhole(value, TAG.BITSTRING, 'keyUsage');
  const bytes = contentOf(value, t).subarray(1);
  return ((bytes[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0;
}
