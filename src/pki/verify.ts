/**
 * Checking a client certificate presented to the authority over mTLS. The HTTPS server
 * already requires one (`requestCert: true, rejectUnauthorized: true, ca`); this repeats
 * the trust decision with Node's X509Certificate and adds what TLS does not know about:
 * the certificate must be a leaf for client authentication whose one URI SAN is a SPIFFE
 * ID in our trust domain. Everything is read with Node's crypto or the strict DER reader
 * in pki/x509 — never with forge (docs/pitfalls.md, node-forge).
 */
import { X509Certificate } from 'node:crypto';
import { childrenOf, oidOf, OID, parseCertificateDer, parseSubjectAltName, readWhole, TAG, type ParsedCertificate } from './x509.js';
import { ClientCertificateError, SpiffeIdError } from './errors.js';
import { parseSpiffeId } from './spiffe.js';

export interface VerifiedClient {
  /** The SPIFFE ID the certificate proves. */
  identity: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  fingerprint256: string;
}

/** Node's `tlsSocket.getPeerX509Certificate()`, the DER of `getPeerCertificate().raw`, or PEM. */
export type PeerCertificate = X509Certificate | Buffer | string;
/** One CA certificate, or several (a PEM bundle or a list) while a CA is being rotated. */
export type TrustedCa = string | X509Certificate | readonly X509Certificate[];

export function verifyClientCertificate(peer: PeerCertificate | undefined | null, ca: TrustedCa, trustDomain: string, nowMs: number = Date.now()): VerifiedClient {
  if (peer === undefined || peer === null || (Buffer.isBuffer(peer) && peer.length === 0)) {
    throw new ClientCertificateError('malformed', 'no client certificate was presented');
  }
  let cert: X509Certificate, parsed: ParsedCertificate;
  try {
    cert = peer instanceof X509Certificate ? peer : new X509Certificate(peer);
    parsed = parseCertificateDer(cert.raw);
  } catch (cause) {
    throw new ClientCertificateError('malformed', 'client certificate cannot be read', {}, { cause });
  }
  const ctx = { serial: cert.serialNumber };

  const anchors = trustedCas(ca);
  if (!anchors.some((a) => cert.checkIssued(a) && cert.verify(a.publicKey))) {
    throw new ClientCertificateError('untrusted', 'client certificate was not issued by the leash CA', ctx);
  }
  if (nowMs < parsed.notBefore.getTime()) throw new ClientCertificateError('not_yet_valid', `client certificate is not valid before ${parsed.notBefore.toISOString()}`, ctx);
  if (nowMs >= parsed.notAfter.getTime()) throw new ClientCertificateError('expired', `client certificate expired at ${parsed.notAfter.toISOString()}`, ctx);
  if (cert.ca) throw new ClientCertificateError('ca_certificate', 'a CA certificate cannot be used as a client identity', ctx);
  if (!hasExtKeyUsage(parsed, OID.clientAuth)) throw new ClientCertificateError('not_client_auth', 'client certificate is not for client authentication (extKeyUsage clientAuth)', ctx);

  const san = parsed.extensions.get(OID.subjectAltName);
  const uris = san ? safeUris(san.value) : [];
  if (uris.length !== 1) {
    throw new ClientCertificateError('uri_san', `client certificate must carry exactly one URI SAN (found ${uris.length})`, ctx);
  }
  let id;
  try {
    id = parseSpiffeId(uris[0]!);
  } catch (cause) {
    if (!(cause instanceof SpiffeIdError)) throw cause;
    throw new ClientCertificateError('spiffe_id', `client certificate URI SAN is not a valid SPIFFE ID: ${cause.message}`, ctx, { cause });
  }
  if (id.trustDomain !== trustDomain) {
    throw new ClientCertificateError('trust_domain', `client identity ${id.id} is outside trust domain ${trustDomain}`, { ...ctx, identity: id.id });
  }
  return { identity: id.id, serial: cert.serialNumber, notBefore: parsed.notBefore, notAfter: parsed.notAfter, fingerprint256: cert.fingerprint256 };
}

/** Only CA certificates can be trust anchors here, however they are passed in. */
function trustedCas(ca: TrustedCa): X509Certificate[] {
  const all =
    typeof ca === 'string'
      ? (ca.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b))
      : ca instanceof X509Certificate
        ? [ca]
        : [...ca];
  return all.filter((c) => c.ca);
}

function safeUris(value: Buffer): string[] {
  try {
    return parseSubjectAltName(value).uris;
  } catch {
    return [];
  }
}

function hasExtKeyUsage(parsed: ParsedCertificate, purpose: string): boolean {
  const ext = parsed.extensions.get(OID.extKeyUsage);
  if (!ext) return false;
  try {
    const seq = readWhole(ext.value, TAG.SEQUENCE, 'extKeyUsage');
    return childrenOf(ext.value, seq).some((t) => oidOf(ext.value, t) === purpose);
  } catch {
    return false;
  }
}
