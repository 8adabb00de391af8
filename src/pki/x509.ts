/**
 * X.509 and PKCS#10, shared by the sidecar (its key and CSR) and the authority's CA.
 * src/pki depends on core/ only, never on authority/ or sidecar/ (test/unit/layout.test.ts),
 * and the sidecar imports it lazily, so node-forge is loaded only when a CSR is made.
 *
 * Building: node-forge's ASN.1 DER encoder assembles the structures; node:crypto makes
 * the keys and the signatures. forge's own certificate/CSR objects are not used because
 * they only handle RSA keys (forge 1.4.3: "Cannot read public key. Unknown OID" for EC),
 * and because generating or signing RSA in forge is slow pure JS (docs/pitfalls.md, node-forge).
 * Identity keys are EC P-256: ~0.3 ms to generate with node:crypto against ~400 ms
 * (measured, Node 20.20, sync, blocking the event loop) for RSA 2048.
 *
 * Reading: a small strict DER reader gives exact byte ranges (what a signature covers,
 * the raw SubjectPublicKeyInfo, the issuer Name) so nothing is verified over re-encoded
 * bytes; Node's X509Certificate does the checks that matter (signature, issuer, key
 * match). forge is never used to verify anything (CVE-2026-33896/33894/33891).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { LeashError, type ErrorContext } from '../core/errors.js';

/** A malformed certificate, CSR or key handed to the X.509 helpers. */
export class X509Error extends LeashError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_X509_INVALID', message, context, options);
  }
}

// ---------------------------------------------------------------------------------------
// Object identifiers
// ---------------------------------------------------------------------------------------

export const OID = {
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
} as const;

/** Signature algorithms leash accepts on CSRs, by OID: hash and key family. */
export const SIGNATURE_ALGORITHMS: Readonly<Record<string, { hash: 'sha256' | 'sha384' | 'sha512'; keyType: 'rsa' | 'ec' }>> = {
  [OID.sha256WithRSAEncryption]: { hash: 'sha256', keyType: 'rsa' },
  [OID.sha384WithRSAEncryption]: { hash: 'sha384', keyType: 'rsa' },
  [OID.sha512WithRSAEncryption]: { hash: 'sha512', keyType: 'rsa' },
  [OID.ecdsaWithSHA256]: { hash: 'sha256', keyType: 'ec' },
  [OID.ecdsaWithSHA384]: { hash: 'sha384', keyType: 'ec' },
  [OID.ecdsaWithSHA512]: { hash: 'sha512', keyType: 'ec' },
};

// ---------------------------------------------------------------------------------------
// DER encoding (forge ASN.1) — exported for the rest of src/pki, not a public API
// ---------------------------------------------------------------------------------------

const A = forge.asn1;
type Asn1 = forge.asn1.Asn1;
const U = A.Class.UNIVERSAL;

export const der = {
  seq: (items: Asn1[]): Asn1 => A.create(U, A.Type.SEQUENCE, true, items),
  set: (items: Asn1[]): Asn1 => A.create(U, A.Type.SET, true, items),
  oid: (oid: string): Asn1 => A.create(U, A.Type.OID, false, A.oidToDer(oid).getBytes()),
  null: (): Asn1 => A.create(U, A.Type.NULL, false, ''),
  bool: (v: boolean): Asn1 => A.create(U, A.Type.BOOLEAN, false, v ? '\xff' : '\x00'),
  /** A non-negative INTEGER from big-endian magnitude bytes (a 0x00 is prepended if needed). */
  uint: (bytes: Buffer): Asn1 => {
    let b = bytes;
    while (b.length > 1 && b[0] === 0 && (b[1]! & 0x80) === 0) b = b.subarray(1);
    if ((b[0]! & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
    return A.create(U, A.Type.INTEGER, false, b.toString('binary'));
  },
  smallInt: (n: number): Asn1 => A.create(U, A.Type.INTEGER, false, A.integerToDer(n).getBytes()),
  utf8: (s: string): Asn1 => A.create(U, A.Type.UTF8, false, Buffer.from(s, 'utf8').toString('binary')),
  octets: (b: Buffer): Asn1 => A.create(U, A.Type.OCTETSTRING, false, b.toString('binary')),
  /** BIT STRING with no unused bits. */
  bits: (b: Buffer): Asn1 => A.create(U, A.Type.BITSTRING, false, '\x00' + b.toString('binary')),
  /** BIT STRING from the raw content octet (unused-bit count first). */
  bitsRaw: (content: Buffer): Asn1 => A.create(U, A.Type.BITSTRING, false, content.toString('binary')),
  /** [n] IMPLICIT primitive (GeneralName choices such as uniformResourceIdentifier [6]). */
  ctxPrimitive: (n: number, value: Buffer): Asn1 => A.create(A.Class.CONTEXT_SPECIFIC, n, false, value.toString('binary')),
  /** [n] constructed (EXPLICIT tagging, or IMPLICIT over a SEQUENCE/SET). */
  ctxConstructed: (n: number, items: Asn1[]): Asn1 => A.create(A.Class.CONTEXT_SPECIFIC, n, true, items),
  /** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
  time: (d: Date): Asn1 =>
    d.getUTCFullYear() < 2050
      ? A.create(U, A.Type.UTCTIME, false, A.dateToUtcTime(d))
      : A.create(U, A.Type.GENERALIZEDTIME, false, A.dateToGeneralizedTime(d)),
  /** Embed already-encoded DER unchanged (BIT STRING contents are kept, not re-decoded). */
  raw: (encoded: Buffer): Asn1 => {
    const fromDer = A.fromDer as unknown as (b: string, o: object) => Asn1;
    return fromDer(encoded.toString('binary'), { strict: true, parseAllBytes: true, decodeBitStrings: false });
  },
  encode: (a: Asn1): Buffer => Buffer.from(A.toDer(a).getBytes(), 'binary'),
};

/** A Name with a CommonName (and optionally an Organization), as UTF8String values. */
export function encodeName(commonName: string, organization?: string): Asn1 {
  const rdn = (oid: string, value: string) => der.set([der.seq([der.oid(oid), der.utf8(value)])]);
  return der.seq([...(organization ? [rdn(OID.organizationName, organization)] : []), rdn(OID.commonName, commonName)]);
}

/** The AlgorithmIdentifier and hash a key of this type signs with. */
export function signatureAlgorithmFor(key: KeyObject): { oid: string; hash: 'sha256' | 'sha384'; algorithmIdentifier: Asn1 } {
  if (key.asymmetricKeyType === 'rsa') {
    // RFC 4055: the parameters of sha256WithRSAEncryption are NULL.
    return { oid: OID.sha256WithRSAEncryption, hash: 'sha256', algorithmIdentifier: der.seq([der.oid(OID.sha256WithRSAEncryption), der.null()]) };
  }
  if (key.asymmetricKeyType === 'ec') {
    // RFC 5758 §3.2: ECDSA AlgorithmIdentifiers have no parameters at all.
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return { oid: OID.ecdsaWithSHA256, hash: 'sha256', algorithmIdentifier: der.seq([der.oid(OID.ecdsaWithSHA256)]) };
    if (curve === 'secp384r1') return { oid: OID.ecdsaWithSHA384, hash: 'sha384', algorithmIdentifier: der.seq([der.oid(OID.ecdsaWithSHA384)]) };
  }
  throw new X509Error(`unsupported signing key type ${describeKey(key)} (use EC P-256/P-384 or RSA)`);
}

/** SEQUENCE { tbs, algorithm, BIT STRING signature } with the signature made by node:crypto. */
export function signStructure(tbs: Asn1, key: KeyObject): Buffer {
  const alg = signatureAlgorithmFor(key);
  const tbsDer = der.encode(tbs);
  // ECDSA signatures come out DER-encoded (Node's default dsaEncoding), as X.509 wants.
  const signature = sign(alg.hash, tbsDer, key);
  return der.encode(der.seq([der.raw(tbsDer), alg.algorithmIdentifier, der.bits(signature)]));
}

export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `rsa-${d?.modulusLength ?? '?'}`;
  if (key.asymmetricKeyType === 'ec') return `ec-${d?.namedCurve ?? '?'}`;
  return String(key.asymmetricKeyType ?? key.type);
}

// ---------------------------------------------------------------------------------------
// DER reading (strict; definite lengths, low tag numbers) — exact byte ranges
// ---------------------------------------------------------------------------------------

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the content. */
  end: number;
}

export function readTlv(buf: Buffer, offset: number, limit = buf.length): Tlv {
  const fail = (why: string): never => {
    throw new X509Error(`malformed DER at byte ${offset}: ${why}`);
  };
  if (offset + 2 > limit) fail('truncated');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) fail('high tag numbers are not used here');
  let len = buf[offset + 1]!;
  let pos = offset + 2;
  if (len === 0x80) fail('indefinite length is not DER');
  if (len > 0x80) {
    const n = len & 0x7f;
    if (n > 4 || pos + n > limit) fail('bad length');
    if (buf[pos] === 0) fail('non-minimal length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i]!;
    if (len < 0x80) fail('non-minimal length');
    pos += n;
  }
  if (pos + len > limit) fail('truncated');
  return { tag, start: offset, contentStart: pos, end: pos + len };
}

export function childrenOf(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let pos = parent.contentStart; pos < parent.end; ) {
    const t = readTlv(buf, pos, parent.end);
    out.push(t);
    pos = t.end;
  }
  return out;
}

export const TAG = { INTEGER: 0x02, BITSTRING: 0x03, OCTETSTRING: 0x04, NULL: 0x05, OID: 0x06, SEQUENCE: 0x30, SET: 0x31, UTCTIME: 0x17, GENERALIZEDTIME: 0x18 } as const;

export const bytesOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.start, t.end);
export const contentOf = (buf: Buffer, t: Tlv): Buffer => buf.subarray(t.contentStart, t.end);
export const oidOf = (buf: Buffer, t: Tlv): string => {
  if (t.tag !== TAG.OID) throw new X509Error('expected an OBJECT IDENTIFIER');
  return A.derToOid(contentOf(buf, t).toString('binary'));
};

/** Read a DER element that must span the whole buffer. */
export function readWhole(buf: Buffer, tag: number, what: string): Tlv {
  const t = readTlv(buf, 0);
  if (t.tag !== tag || t.end !== buf.length) throw new X509Error(`${what}: not a single DER ${tag === TAG.SEQUENCE ? 'SEQUENCE' : 'element'}`);
  return t;
}

function parseTime(buf: Buffer, t: Tlv): Date {
  const s = contentOf(buf, t).toString('latin1');
  const m =
    t.tag === TAG.UTCTIME ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : t.tag === TAG.GENERALIZEDTIME ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s) : null;
  if (!m) throw new X509Error(`malformed certificate time "${s}"`);
  let year = Number(m[1]);
  if (t.tag === TAG.UTCTIME) year += year >= 50 ? 1900 : 2000; // RFC 5280 §4.1.2.5.1
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

export interface ParsedCertificate {
  tbs: Buffer;
  serial: Buffer;
  issuer: Buffer;
  subject: Buffer;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;
  extensions: Map<string, { critical: boolean; value: Buffer }>;
}

/** The fields leash reads from a DER certificate, as exact byte ranges. */
export function parseCertificateDer(buf: Buffer): ParsedCertificate {
  const cert = readWhole(buf, TAG.SEQUENCE, 'certificate');
  const [tbsT] = childrenOf(buf, cert);
  if (!tbsT || tbsT.tag !== TAG.SEQUENCE) throw new X509Error('certificate: no TBSCertificate');
  const f = childrenOf(buf, tbsT);
  let i = f[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
  const next = (tag: number, what: string): Tlv => {
    const t = f[i++];
    if (!t || t.tag !== tag) throw new X509Error(`certificate: bad ${what}`);
    return t;
  };
  const serial = next(TAG.INTEGER, 'serialNumber');
  next(TAG.SEQUENCE, 'signature');
  const issuer = next(TAG.SEQUENCE, 'issuer');
  const validity = next(TAG.SEQUENCE, 'validity');
  const subject = next(TAG.SEQUENCE, 'subject');
  const spki = next(TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const [nb, na] = childrenOf(buf, validity);
  if (!nb || !na) throw new X509Error('certificate: bad validity');
  const extensions = new Map<string, { critical: boolean; value: Buffer }>();
  const extsT = f.slice(i).find((t) => t.tag === 0xa3);
  if (extsT) {
    const [list] = childrenOf(buf, extsT);
    if (!list || list.tag !== TAG.SEQUENCE) throw new X509Error('certificate: bad extensions');
    for (const ext of childrenOf(buf, list)) {
      const parts = childrenOf(buf, ext);
      const oid = oidOf(buf, parts[0]!);
      const critical = parts.length === 3 && buf[parts[1]!.contentStart] !== 0;
      const value = parts[parts.length - 1]!;
      if (value.tag !== TAG.OCTETSTRING) throw new X509Error('certificate: bad extension value');
      if (extensions.has(oid)) throw new X509Error(`certificate: duplicate extension ${oid}`); // RFC 5280 §4.2
      extensions.set(oid, { critical, value: contentOf(buf, value) });
    }
  }
  return {
    tbs: bytesOf(buf, tbsT),
    serial: contentOf(buf, serial),
    issuer: bytesOf(buf, issuer),
    subject: bytesOf(buf, subject),
    notBefore: parseTime(buf, nb),
    notAfter: parseTime(buf, na),
    spki: bytesOf(buf, spki),
    extensions,
  };
}

/** SubjectAltName entries by kind, from the extension's DER value. */
export function parseSubjectAltName(value: Buffer): { uris: string[]; dnsNames: string[]; ipAddresses: string[]; other: number } {
  const out = { uris: [] as string[], dnsNames: [] as string[], ipAddresses: [] as string[], other: 0 };
  const seq = readWhole(value, TAG.SEQUENCE, 'subjectAltName');
  for (const gn of childrenOf(value, seq)) {
    const content = contentOf(value, gn);
    if (gn.tag === 0x86) out.uris.push(content.toString('latin1'));
    else if (gn.tag === 0x82) out.dnsNames.push(content.toString('latin1'));
    else if (gn.tag === 0x87) out.ipAddresses.push(content.length === 4 ? [...content].join('.') : content.toString('hex').replace(/(.{4})(?!$)/g, '$1:'));
    else out.other++;
  }
  return out;
}

/** The subjectPublicKey bits of an SPKI, for RFC 5280 §4.2.1.2 key identifiers (method 1). */
export function keyIdentifier(spki: Buffer): Buffer {
  const top = readWhole(spki, TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const bits = childrenOf(spki, top)[1];
  if (!bits || bits.tag !== TAG.BITSTRING) throw new X509Error('subjectPublicKeyInfo: no public key');
  return createHash('sha1').update(spki.subarray(bits.contentStart + 1, bits.end)).digest();
}

/** The DER inside the first PEM block with this label; exactly one such block is accepted. */
export function pemToDer(pem: string, labels: readonly string[], what: string): Buffer {
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*?)-----END \1-----/g)];
  const wanted = blocks.filter((b) => labels.includes(b[1]!));
  if (wanted.length !== 1) throw new X509Error(`${what}: expected exactly one PEM "${labels[0]}" block, found ${wanted.length}`);
  const body = wanted[0]![2]!.replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

export function derToPem(derBytes: Buffer, label: string): string {
  const b64 = derBytes.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------
// Sidecar API
// ---------------------------------------------------------------------------------------

export interface IdentityKeyPair {
  privateKeyPem: string; // PKCS#8
  publicKeyPem: string; // SPKI
}

/** A fresh EC P-256 key pair from node:crypto (~0.3 ms; RSA 2048 takes ~400 ms, blocking). */
export function createIdentityKey(): IdentityKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}

/**
 * A PEM PKCS#10 CSR (RFC 2986) for the key pair, self-signed with it. The authority takes
 * only the public key from it (it assigns the identity itself), so the CSR asks for nothing
 * else: the subject is just CN=commonName and there are no attributes.
 * Works for EC P-256 and RSA keys alike (the public key is taken from the private key).
 */
export function createCsr(keyPair: Pick<IdentityKeyPair, 'privateKeyPem'>, commonName: string): string {
  if (commonName.length === 0 || commonName.length > 64) throw new X509Error('CSR common name must be 1 to 64 characters'); // ub-common-name
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPair.privateKeyPem);
  } catch (cause) {
    throw new X509Error('CSR: the private key cannot be read', {}, { cause });
  }
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const info = der.seq([
    der.smallInt(0), // version v1(0)
    encodeName(commonName),
    der.raw(spki),
    der.ctxConstructed(0, []), // attributes [0] IMPLICIT SET OF Attribute: empty
  ]);
  return derToPem(signStructure(info, key), 'CERTIFICATE REQUEST');
}

export interface CertificateInfo {
  /** Every URI SubjectAltName, in order. */
  uriSans: string[];
  notBefore: Date;
  notAfter: Date;
  /** Upper-case hex, as Node's X509Certificate#serialNumber. */
  serial: string;
  /** Colon-separated upper-case hex SHA-256 of the DER, as Node's X509Certificate#fingerprint256. */
  fingerprint256: string;
}

/** What the sidecar needs to know about a certificate (the first one in a PEM bundle). */
export function certificateInfo(pem: string | Buffer | X509Certificate): CertificateInfo {
  let x509: X509Certificate;
  try {
    x509 = pem instanceof X509Certificate ? pem : new X509Certificate(pem);
  } catch (cause) {
    throw new X509Error('not a readable X.509 certificate', {}, { cause });
  }
  const parsed = parseCertificateDer(x509.raw);
  const san = parsed.extensions.get(OID.subjectAltName);
  return {
    uriSans: san ? parseSubjectAltName(san.value).uris : [],
    notBefore: parsed.notBefore,
    notAfter: parsed.notAfter,
    serial: x509.serialNumber,
    fingerprint256: x509.fingerprint256,
  };
}
