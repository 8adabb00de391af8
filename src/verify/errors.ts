import { LeashError, type ErrorContext } from '../core/errors.js';

/**
 * Why leash/verify refused a token. Codes are stable (docs/verify.md): a service maps
 * them to HTTP statuses with httpStatusOf(), never by parsing the message.
 */
export const VERIFY_ERROR_CODES = [
  /** Not a well-formed ES256 JWT signed by a key in the JWKS, wrong issuer, missing claims, not yet valid. */
  'LEASH_VERIFY_INVALID',
  /** `exp` has passed (beyond clockToleranceSeconds). */
  'LEASH_VERIFY_EXPIRED',
  /** `aud` does not name this service. */
  'LEASH_VERIFY_AUDIENCE',
  /** A required scope is missing from `scope`. */
  'LEASH_VERIFY_SCOPE',
  /** The lease, instance, credential or everything was revoked (or a revocation gap fails it closed). */
  'LEASH_VERIFY_REVOKED',
  /** No key to check the token with: the JWKS cannot be fetched (or refetched yet) and no cached key fits. */
  'LEASH_VERIFY_UNAVAILABLE',
] as const;

export type VerifyErrorCode = (typeof VERIFY_ERROR_CODES)[number];

export class VerifyError extends LeashError {
  declare readonly code: VerifyErrorCode;
  constructor(code: VerifyErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(code, message, context, options);
  }
}

/** The HTTP status a service should answer with: 401 (no valid credential), 403 (valid but not allowed), 503 (try again). */
export function httpStatusOf(code: VerifyErrorCode): 401 | 403 | 503 {
  switch (code) {
    case 'LEASH_VERIFY_SCOPE':
      return 403;
    case 'LEASH_VERIFY_UNAVAILABLE':
      return 503;
    default:
      return 401;
  }
}
