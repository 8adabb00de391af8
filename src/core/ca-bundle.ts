import { X509Certificate } from 'node:crypto';

/**
 * A CA bundle an operator or embedder names (a route's or the authority's `caFile`, the
 * authority's `kubernetes.caFile`, `--ca`, leash/verify's `ca`) replaces the system roots
 * for that peer. Node reads an empty string as "no CA given" and trusts every public root
 * instead (tls.createSecureContext: `if (ca) … else addRootCerts()`), and so did leash's
 * own option building: an empty file silently turned the operator's pin into "anyone with
 * a public certificate for that name". A bundle is usable only if it holds at least one
 * PEM certificate Node can read; anything else is refused where it is loaded.
 */
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g;

/** Pure: does `pem` hold at least one readable PEM certificate? */
export function holdsCertificate(pem: unknown): boolean {
  if (typeof pem !== 'string') return false;
  for (const [block] of pem.matchAll(PEM_BLOCK)) {
    try {
      new X509Certificate(block);
      return true;
    } catch {
      // not a certificate after all: look at the next block
    }
  }
  return false;
}

/** The reason a CA bundle named by `where` is refused, or undefined when it holds a certificate. */
export function caBundleProblem(pem: unknown, where: string): string | undefined {
  if (holdsCertificate(pem)) return undefined;
  return `${where}: holds no PEM certificate (an empty CA would mean every public root CA, not the one you named)`;
}
