/**
 * Reading a sidecar's PKCS#10 CSR (RFC 2986). The CA needs exactly one thing from it: a
 * public key whose holder proved possession by signing the request. So this checks the
 * self-signature with node:crypto over the CertificationRequestInfo bytes *as received*
 * (never re-encoded, never forge's csr.verify — docs/pitfalls.md, node-forge), checks the key is
 * one leash certifies, and returns the key. Subject, attributes and requested extensions
 * (SANs included) are deliberately not read: the CA decides the identity.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { childrenOf, contentOf, bytesOf, describeKey, oidOf, pemToDer, readWhole, SIGNATURE_ALGORITHMS, TAG, X509Error } from './x509.js';
import { CsrInvalidError, KeyUnsupportedError } from './errors.js';

/** A CSR is a few hundred bytes; refuse anything absurd before parsing it. */
const MAX_CSR_PEM_CHARS = 16 * 1024;

export interface VerifiedCsr {
  publicKey: KeyObject;
  /** The public key as canonical DER SubjectPublicKeyInfo (re-exported by node:crypto). */
  spki: Buffer;
}

/** The keys leash puts in identity certificates: EC P-256, or RSA 2048–8192 with e = 65537. */
export function checkLeafKey(key: KeyObject): void {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1') return;
  if (key.asymmetricKeyType === 'rsa' && d?.modulusLength !== undefined && d.modulusLength >= 2048 && d.modulusLength <= 8192) {
    // Small exponents are what signature-forgery bugs feed on (CVE-2026-33894); every sane generator uses 65537.
    if (d.publicExponent === 65537n) return;
    throw new KeyUnsupportedError('RSA public exponent must be 65537', { key: describeKey(key) });
  }
  throw new KeyUnsupportedError(`unsupported key ${describeKey(key)}: use EC P-256 or RSA 2048-8192`, { key: describeKey(key) });
}

export function verifyCsr(csrPem: string): VerifiedCsr {
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_PEM_CHARS) throw new CsrInvalidError('CSR missing or larger than 16 KiB');
  let buf: Buffer;
  try {
    buf = pemToDer(csrPem, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'], 'CSR');
  } catch (cause) {
    throw new CsrInvalidError('CSR is not a PEM "CERTIFICATE REQUEST"', {}, { cause });
  }

  let info: Buffer, spkiRaw: Buffer, algOid: string, signature: Buffer;
  try {
    const top = childrenOf(buf, readWhole(buf, TAG.SEQUENCE, 'CSR'));
    const [infoT, algT, sigT] = top;
    if (top.length !== 3 || infoT?.tag !== TAG.SEQUENCE || algT?.tag !== TAG.SEQUENCE || sigT?.tag !== TAG.BITSTRING) {
      throw new X509Error('CSR is not SEQUENCE { info, algorithm, signature }');
    }
    const fields = childrenOf(buf, infoT);
    const [version, subject, spkiT] = fields;
    if (version?.tag !== TAG.INTEGER || contentOf(buf, version).length !== 1 || contentOf(buf, version)[0] !== 0) throw new X509Error('CSR version is not v1 (0)');
    if (subject?.tag !== TAG.SEQUENCE || spkiT?.tag !== TAG.SEQUENCE) throw new X509Error('CSR has no subject / public key');
    info = bytesOf(buf, infoT);
    spkiRaw = bytesOf(buf, spkiT);
    const alg = childrenOf(buf, algT);
    algOid = oidOf(buf, alg[0]!);
    // Parameters: absent (ECDSA) or NULL (RSA PKCS#1 v1.5); anything else is another scheme.
    if (alg.length > 2 || (alg.length === 2 && (alg[1]!.tag !== TAG.NULL || alg[1]!.end !== alg[1]!.contentStart))) {
      throw new X509Error('CSR signature algorithm has unexpected parameters');
    }
    const sigBits = contentOf(buf, sigT);
    if (sigBits.length < 2 || sigBits[0] !== 0) throw new X509Error('CSR signature BIT STRING is malformed');
    signature = sigBits.subarray(1);
  } catch (cause) {
    if (cause instanceof CsrInvalidError) throw cause;
    throw new CsrInvalidError(`malformed CSR: ${(cause as Error).message}`, {}, { cause });
  }

  const algorithm = SIGNATURE_ALGORITHMS[algOid];
  if (!algorithm) throw new CsrInvalidError(`unsupported CSR signature algorithm ${algOid} (use ECDSA or RSA PKCS#1 v1.5 with SHA-2)`, { algorithm: algOid });

  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: spkiRaw, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new CsrInvalidError('CSR public key cannot be read', {}, { cause });
  }
  checkLeafKey(publicKey);
  if (publicKey.asymmetricKeyType !== algorithm.keyType) {
    throw new CsrInvalidError(`CSR signature algorithm ${algOid} does not match its ${describeKey(publicKey)} key`);
  }

  let ok = false;
  try {
    ok = verify(algorithm.hash, info, publicKey, signature);
  } catch {
    ok = false; // e.g. an ECDSA signature that is not valid DER
  }
  if (!ok) throw new CsrInvalidError('CSR signature does not verify: the requester does not hold the private key');
  return { publicKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}
