/**
 * Assembling and signing one X.509 v3 certificate (RFC 5280). Every certificate the CA
 * makes goes through buildCertificate; callers decide the policy (what a leaf, a server
 * or the CA itself gets). The issuer Name is copied byte for byte from the CA certificate
 * so chain building never depends on re-encoding it.
 */
import { isIP } from 'node:net';
import { randomBytes, type KeyObject } from 'node:crypto';
import { der, encodeName, keyIdentifier, OID, signatureAlgorithmFor, signStructure } from './x509.js';
import { CertificateRequestError } from './errors.js';

export type KeyUsage = 'digitalSignature' | 'keyEncipherment' | 'keyAgreement' | 'keyCertSign' | 'cRLSign';
const KEY_USAGE_BIT: Record<KeyUsage, number> = { digitalSignature: 0, keyEncipherment: 2, keyAgreement: 4, keyCertSign: 5, cRLSign: 6 };

export interface Issuer {
  /** DER Name of the issuer (its certificate's subject, as encoded there). */
  name: Buffer;
  key: KeyObject;
  /** The issuer's subjectKeyIdentifier, if its certificate has one (becomes our AKI). */
  keyId?: Buffer | undefined;
}

export interface CertificateTemplate {
  /** Absent: self-signed (issuer = subject, signed with `selfKey`). */
  issuer?: Issuer;
  selfKey?: KeyObject;
  subject: { commonName: string; organization?: string };
  /** DER SubjectPublicKeyInfo of the certified key. */
  spki: Buffer;
  serial?: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** CA:TRUE with this pathLenConstraint; absent means CA:FALSE. */
  caPathLen?: number;
  keyUsage: readonly KeyUsage[];
  extKeyUsage?: readonly string[];
  san?: { uris?: readonly string[]; dnsNames?: readonly string[]; ipAddresses?: readonly string[] };
}

/** A random positive 16-octet serial (127 random bits; top bit cleared so DER needs no 0x00 pad, under RFC 5280's 20-octet cap). */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f || 0x01; // never 0x00 first: stays minimal and 16 bytes long
  return b;
}

/** Whole seconds: X.509 times have no fractions, so what we report is what the certificate says. */
export const toCertTime = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

function keyUsageBits(usages: readonly KeyUsage[]): Buffer {
  let mask = 0; // bit 0 is the most significant bit of the first octet
  for (const u of usages) mask |= 0x8000 >> KEY_USAGE_BIT[u];
  const bytes = mask & 0xff ? [mask >> 8, mask & 0xff] : [mask >> 8];
  const last = bytes[bytes.length - 1]!;
  let unused = 0;
  while (unused < 7 && (last & (1 << unused)) === 0) unused++; // DER: trailing zero bits dropped
  return Buffer.from([unused, ...bytes]);
}

function extension(oid: string, critical: boolean, value: ReturnType<typeof der.seq>) {
  return der.seq([der.oid(oid), ...(critical ? [der.bool(true)] : []), der.octets(der.encode(value))]);
}

export function buildCertificate(t: CertificateTemplate): Buffer {
  const signer = t.issuer?.key ?? t.selfKey;
  if (!signer) throw new Error('buildCertificate: no issuer and no selfKey');
  const subject = encodeName(t.subject.commonName, t.subject.organization);
  const issuerName = t.issuer ? der.raw(t.issuer.name) : subject;
  const subjectKeyId = keyIdentifier(t.spki);
  const authorityKeyId = t.issuer ? t.issuer.keyId : subjectKeyId;

  const exts = [
    // RFC 5280 §4.2.1.9: CA:FALSE is the DEFAULT, so a leaf's SEQUENCE is empty.
    extension(OID.basicConstraints, true, der.seq(t.caPathLen === undefined ? [] : [der.bool(true), der.smallInt(t.caPathLen)])),
    extension(OID.keyUsage, true, der.bitsRaw(keyUsageBits(t.keyUsage))),
    ...(t.extKeyUsage?.length ? [extension(OID.extKeyUsage, false, der.seq(t.extKeyUsage.map((o) => der.oid(o))))] : []),
    ...(t.san ? [extension(OID.subjectAltName, false, der.seq(generalNames(t.san)))] : []),
    extension(OID.subjectKeyIdentifier, false, der.octets(subjectKeyId)),
    // keyIdentifier [0] IMPLICIT OCTET STRING
    ...(authorityKeyId ? [extension(OID.authorityKeyIdentifier, false, der.seq([der.ctxPrimitive(0, authorityKeyId)]))] : []),
  ];

  const tbs = der.seq([
    der.ctxConstructed(0, [der.smallInt(2)]), // version v3
    der.uint(t.serial ?? randomSerial()),
    signatureAlgorithmFor(signer).algorithmIdentifier,
    issuerName,
    der.seq([der.time(t.notBefore), der.time(t.notAfter)]),
    subject,
    der.raw(t.spki),
    der.ctxConstructed(3, [der.seq(exts)]),
  ]);
  return signStructure(tbs, signer);
}

function generalNames(san: NonNullable<CertificateTemplate['san']>) {
  return [
    ...(san.uris ?? []).map((u) => der.ctxPrimitive(6, Buffer.from(u, 'latin1'))), // uniformResourceIdentifier
    ...(san.dnsNames ?? []).map((h) => der.ctxPrimitive(2, Buffer.from(h, 'latin1'))), // dNSName
    ...(san.ipAddresses ?? []).map((ip) => der.ctxPrimitive(7, ipBytes(ip))), // iPAddress
  ];
}

/** A DNS host name for a server certificate: LDH labels, no wildcards. Returned lower-cased. */
export function validateHostname(name: string): string {
  const h = name.toLowerCase();
  if (isIP(h)) throw new CertificateRequestError(`${name} is an IP address: pass it in ipAddresses`);
  const ok = h.length > 0 && h.length <= 253 && h.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l));
  if (!ok) throw new CertificateRequestError(`not a valid DNS host name for a certificate: ${JSON.stringify(name.slice(0, 100))}`);
  return h;
}

/** 4 or 16 octets (RFC 5280 §4.2.1.6). */
export function ipBytes(ip: string): Buffer {
  const v = isIP(ip);
  if (v === 4) return Buffer.from(ip.split('.').map(Number));
  if (v !== 6) throw new CertificateRequestError(`not an IP address: ${JSON.stringify(ip.slice(0, 100))}`);
  let text = ip.replace(/%.*$/, ''); // a zone id is not part of the address
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, -v4[1]!.length) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
