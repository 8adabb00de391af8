import { LeashError, type ErrorContext } from '../../core/errors.js';

/**
 * Every code the authority's state layer (lease store, join tokens) can fail with.
 * Messages name keys, lease ids and identity names, never a secret or a join token.
 */
export const STORE_ERROR_CODES = [
  /** The store's backend (Redis) failed or is unreachable, or the store was closed. */
  'LEASH_ERR_STORE',
  /** A record handed to the store is unusable (empty id, non-finite expiry...): a caller bug. */
  'LEASH_ERR_STORE_RECORD',
  /** A join token that is unknown, already used, expired or malformed: one message for all. */
  'LEASH_ERR_JOIN_TOKEN',
  /** A join token cannot be created: invalid identity name or TTL. */
  'LEASH_ERR_JOIN_TOKEN_REQUEST',
] as const;

export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number];

/** The backend failed; `cause` carries the driver's error (it never holds a secret: none is ever sent). */
export class StoreError extends LeashError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_STORE', message, context, options);
  }
}

export class StoreRecordError extends LeashError {
  constructor(message: string, context: ErrorContext = {}) {
    super('LEASH_ERR_STORE_RECORD', message, context);
  }
}

/**
 * Redeeming failed. Deliberately one message whether the token is unknown, used, expired
 * or malformed, so a caller probing tokens learns nothing about which.
 */
export class JoinTokenError extends LeashError {
  constructor() {
    super('LEASH_ERR_JOIN_TOKEN', 'join token is invalid, expired or already used');
  }
}

export class JoinTokenRequestError extends LeashError {
  constructor(message: string, context: ErrorContext = {}) {
    super('LEASH_ERR_JOIN_TOKEN_REQUEST', message, context);
  }
}
