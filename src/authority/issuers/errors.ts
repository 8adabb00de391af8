import { LeashError, type ErrorContext } from '../../core/errors.js';

/**
 * Every code an issuer can fail with. Stable: the lease layer maps them to its answer
 * (all are "credential unavailable" to a sidecar) and operators grep logs for them.
 * Messages name the issuer kind, the credential, the command or the endpoint, never a
 * secret, a token, a command's stdout or a token endpoint's body.
 */
export const ISSUER_ERROR_CODES = [
  /** static: the file is missing, empty or unreadable, or the env variable is unset/empty/unsafe. */
  'LEASH_ERR_ISSUER_SOURCE',
  /** jwt: the keys directory is missing, empty, or holds a key that is not a P-256 private key. */
  'LEASH_ERR_ISSUER_KEYS',
  /** oauth2: the token endpoint refused (RFC 6749 §5.2 `error`), answered non-2xx, or was unreachable. */
  'LEASH_ERR_ISSUER_UPSTREAM',
  /** oauth2 / exec: no answer within the timeout (the exec'd process group is killed). */
  'LEASH_ERR_ISSUER_TIMEOUT',
  /** oauth2 / exec: an answer that is not the expected JSON, lacks the value, or has no usable lifetime. */
  'LEASH_ERR_ISSUER_RESPONSE',
  /** exec: the command could not start, exited non-zero, died by a signal, or wrote too much. */
  'LEASH_ERR_ISSUER_EXEC',
  /** Options that cannot work (empty command, non-https token URL, TTL under one second...). */
  'LEASH_ERR_ISSUER_CONFIG',
  /** issue() after close(). */
  'LEASH_ERR_ISSUER_CLOSED',
] as const;

export type IssuerErrorCode = (typeof ISSUER_ERROR_CODES)[number];

export class IssuerError extends LeashError {
  declare readonly code: IssuerErrorCode;
  constructor(code: IssuerErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(code, message, context, options);
  }
}

/** `jwt issuer for credential "search"` — the prefix every issuer message starts with. */
export function issuerLabel(kind: string, credential: string | undefined): string {
  return credential ? `${kind} issuer for credential "${credential}"` : `${kind} issuer`;
}
