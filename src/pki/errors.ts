/**
 * Coded errors of the certificate authority (src/pki). Each has a stable `code`;
 * the HTTP layer maps them to answers (a CSR or client-certificate problem is the caller's
 * fault, a CA problem is a configuration fault at start). Messages carry no secrets.
 */
import { LeashError, type ErrorContext } from '../core/errors.js';

/** A CSR that cannot be parsed, uses an unsupported signature algorithm, or whose self-signature does not verify. */
export class CsrInvalidError extends LeashError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_CSR_INVALID', message, context, options);
  }
}

/** A CSR public key leash does not certify (only EC P-256 and RSA 2048–8192 with e = 65537). */
export class KeyUnsupportedError extends LeashError {
  constructor(message: string, context: ErrorContext = {}) {
    super('LEASH_ERR_KEY_UNSUPPORTED', message, context);
  }
}

/** A string that is not a SPIFFE ID leash accepts (spiffe://<trust domain>/<path>). */
export class SpiffeIdError extends LeashError {
  constructor(message: string, context: ErrorContext = {}) {
    super('LEASH_ERR_SPIFFE_ID_INVALID', message, context);
  }
}

/** A CA certificate/key that cannot be used: not a CA, key mismatch, expired, unsupported key. */
export class CaInvalidError extends LeashError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_CA_INVALID', message, context, options);
  }
}

/** Bad parameters for a certificate to issue (TTL, host names, IP addresses). */
export class CertificateRequestError extends LeashError {
  constructor(message: string, context: ErrorContext = {}) {
    super('LEASH_ERR_CERT_REQUEST_INVALID', message, context);
  }
}

/** Why a client certificate was refused (ClientCertificateError#reason). */
export type ClientCertificateRefusal =
  | 'malformed'
  | 'untrusted'
  | 'not_yet_valid'
  | 'expired'
  | 'ca_certificate'
  | 'not_client_auth'
  | 'uri_san'
  | 'spiffe_id'
  | 'trust_domain';

/** A client certificate that does not prove a leash identity (defence in depth behind TLS). */
export class ClientCertificateError extends LeashError {
  readonly reason: ClientCertificateRefusal;
  constructor(reason: ClientCertificateRefusal, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_CLIENT_CERT_INVALID', message, { reason, ...context }, options);
    this.reason = reason;
  }
}

/** Every code this directory produces (to be merged into ERROR_CODES and docs/errors.md). */
export const CA_ERROR_CODES = [
  'LEASH_ERR_CSR_INVALID',
  'LEASH_ERR_KEY_UNSUPPORTED',
  'LEASH_ERR_SPIFFE_ID_INVALID',
  'LEASH_ERR_CA_INVALID',
  'LEASH_ERR_CERT_REQUEST_INVALID',
  'LEASH_ERR_CLIENT_CERT_INVALID',
] as const;
