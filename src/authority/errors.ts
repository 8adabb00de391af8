import { type ErrorContext, LeashError } from '../core/errors.js';

/**
 * Errors the authority answers with: `{"error":{"code","message"}}` and the status here.
 * The sidecar sorts them by status (5xx/429 retry, 401/403/404 drop the lease).
 */
export class AuthorityError extends LeashError {
  readonly status: number;
  /** Sent as `Retry-After` (seconds) when set: a 429's wait. */
  readonly retryAfterSeconds: number | undefined;
  constructor(code: string, status: number, message: string, context: ErrorContext = {}, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(code, message, context, options);
    this.status = status;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

export const badRequest = (message: string) => new AuthorityError('LEASH_ERR_AUTHORITY_BAD_REQUEST', 400, message);
export const unauthenticated = (message = 'a valid client certificate is required') => new AuthorityError('LEASH_ERR_UNAUTHENTICATED', 401, message);
export const forbidden = (message: string, context: ErrorContext = {}) => new AuthorityError('LEASH_ERR_POLICY_DENIED', 403, message, context);
export const notFound = (message: string) => new AuthorityError('LEASH_ERR_NOT_FOUND', 404, message);
export const rateLimited = (retryAfterSeconds: number, what: 'lease' | 'bootstrap' | 'renew' = 'lease') =>
  new AuthorityError(
    'LEASH_ERR_RATE_LIMITED',
    429,
    what === 'lease'
      ? `too many lease requests from this identity; retry in ${retryAfterSeconds} s`
      : what === 'renew'
        ? `too many identity renewals from this identity; retry in ${retryAfterSeconds} s`
        : `too many bootstrap requests from this address; retry in ${retryAfterSeconds} s`,
    {},
    { retryAfterSeconds },
  );

export const AUTHORITY_ERROR_CODES = [
  'LEASH_ERR_AUTHORITY_BAD_REQUEST',
  'LEASH_ERR_UNAUTHENTICATED',
  'LEASH_ERR_POLICY_DENIED',
  'LEASH_ERR_NOT_FOUND',
  'LEASH_ERR_ISSUE_FAILED',
  'LEASH_ERR_RATE_LIMITED',
] as const;
