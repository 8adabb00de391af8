/**
 * Coded errors. Every failure leash reports has a stable `code`; the ones an agent can
 * see over HTTP also carry the DESIGN §5 `type` and status. docs/errors.md documents each
 * code and a test fails when one is missing there.
 *
 * Messages never contain a secret: callers pass names, fingerprints and paths only.
 */

export type ErrorContext = Record<string, string | number | boolean | undefined>;

export class LeashError extends Error {
  readonly code: string;
  readonly context: ErrorContext;
  constructor(code: string, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.context = context;
  }
}

/** The agent-facing error types of DESIGN §5, with their HTTP status. */
export const HTTP_ERROR_TYPES = {
  leash_no_route: 404,
  leash_denied: 403,
  leash_bad_request: 400,
  leash_credential_unavailable: 503,
  leash_upstream_unreachable: 502,
  leash_upstream_timeout: 504,
  leash_shutting_down: 503,
  leash_upstream_bad_response: 502,
} as const;

export type HttpErrorType = keyof typeof HTTP_ERROR_TYPES;

/** An error that is answered to the agent as a DESIGN §5 JSON body. */
export class LeashHttpError extends LeashError {
  readonly type: HttpErrorType;
  readonly status: number;
  readonly route: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: string,
    type: HttpErrorType,
    message: string,
    context: ErrorContext & { route?: string; retryAfterSeconds?: number } = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, context, options);
    this.type = type;
    this.status = HTTP_ERROR_TYPES[type];
    this.route = context.route;
    this.retryAfterSeconds = context.retryAfterSeconds;
  }
}

export class NoRouteError extends LeashHttpError {
  constructor(message: string, context: ErrorContext = {}) {
    super('LEASH_ERR_NO_ROUTE', 'leash_no_route', message, context);
  }
}

export class DeniedError extends LeashHttpError {
  constructor(message: string, context: ErrorContext & { route?: string } = {}) {
    super('LEASH_ERR_DENIED', 'leash_denied', message, context);
  }
}

export class BadRequestError extends LeashHttpError {
  constructor(message: string, context: ErrorContext & { route?: string } = {}) {
    super('LEASH_ERR_BAD_REQUEST', 'leash_bad_request', message, context);
  }
}

export class CredentialUnavailableError extends LeashHttpError {
  constructor(message: string, context: ErrorContext & { route?: string; retryAfterSeconds?: number } = {}) {
    super('LEASH_ERR_CREDENTIAL_UNAVAILABLE', 'leash_credential_unavailable', message, {
      retryAfterSeconds: 1,
      ...context,
    });
  }
}

export class UpstreamUnreachableError extends LeashHttpError {
  constructor(message: string, context: ErrorContext & { route?: string } = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_UPSTREAM_UNREACHABLE', 'leash_upstream_unreachable', message, context, options);
  }
}

export class UpstreamTimeoutError extends LeashHttpError {
  constructor(message: string, context: ErrorContext & { route?: string } = {}) {
    super('LEASH_ERR_UPSTREAM_TIMEOUT', 'leash_upstream_timeout', message, context);
  }
}

/**
 * The upstream answered something leash cannot relay safely (an invalid status, a
 * transfer-coding it cannot re-frame, an unsolicited `101`, a response the HTTP parser
 * rejects). The message names the problem, never the upstream's bytes.
 */
export class UpstreamBadResponseError extends LeashHttpError {
  constructor(message: string, context: ErrorContext & { route?: string } = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_UPSTREAM_BAD_RESPONSE', 'leash_upstream_bad_response', message, context, options);
  }
}

export class ShuttingDownError extends LeashHttpError {
  constructor(context: ErrorContext & { route?: string } = {}) {
    super('LEASH_ERR_SHUTTING_DOWN', 'leash_shutting_down', 'leash is shutting down; retry on another instance', {
      retryAfterSeconds: 1,
      ...context,
    });
  }
}

/** Invalid configuration: the message names the key path and the reason. */
export class ConfigError extends LeashError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[], context: ErrorContext = {}) {
    super('LEASH_ERR_CONFIG', issues.length === 1 ? issues[0]! : `invalid configuration:\n  ${issues.join('\n  ')}`, context);
    this.issues = issues;
  }
}

/** A credential source (file or environment) that cannot produce a usable value. */
export class CredentialSourceError extends LeashError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_CREDENTIAL_SOURCE', message, context, options);
  }
}

/**
 * A listener could not be bound (port taken, address not local, no permission). Raised
 * before anything is spent (no bootstrap, no lease); the message names the address and
 * the key or variable that moves it.
 */
export class ListenError extends LeashError {
  constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super('LEASH_ERR_LISTEN', message, context, options);
  }
}

/** Bad command-line usage. */
export class UsageError extends LeashError {
  constructor(message: string) {
    super('LEASH_ERR_USAGE', message);
  }
}

/**
 * A call from the sidecar (or admin CLI) to the authority failed. `kind` sorts it
 * (STYLE 6): `retryable` (network, timeout, 5xx, 429: keep what is held, back off),
 * `refused` (401/403/404 and other 4xx: drop the lease at once), `malformed` (a 2xx
 * whose body fails validation: rejected and counted, what is held is kept while valid).
 */
export type AuthorityFailure = 'retryable' | 'refused' | 'malformed';
const AUTHORITY_CODES: Record<AuthorityFailure, string> = {
  retryable: 'LEASH_ERR_AUTHORITY_UNAVAILABLE',
  refused: 'LEASH_ERR_AUTHORITY_REFUSED',
  malformed: 'LEASH_ERR_LEASE_MALFORMED',
};
export class AuthorityCallError extends LeashError {
  readonly kind: AuthorityFailure;
  readonly status: number | undefined;
  /** A retryable answer's `Retry-After`, in ms (delta-seconds only), when it had one. */
  readonly retryAfterMs: number | undefined;
  constructor(kind: AuthorityFailure, message: string, context: ErrorContext & { status?: number; retryAfterMs?: number } = {}, options?: { cause?: unknown }) {
    super(AUTHORITY_CODES[kind], message, context, options);
    this.kind = kind;
    this.status = context.status;
    this.retryAfterMs = context.retryAfterMs;
  }
}

/** Every code leash can produce; docs/errors.md must document each (test/unit/errors.test.ts). */
export const ERROR_CODES = [
  'LEASH_ERR_NO_ROUTE',
  'LEASH_ERR_DENIED',
  'LEASH_ERR_BAD_REQUEST',
  'LEASH_ERR_CREDENTIAL_UNAVAILABLE',
  'LEASH_ERR_UPSTREAM_UNREACHABLE',
  'LEASH_ERR_UPSTREAM_TIMEOUT',
  'LEASH_ERR_UPSTREAM_BAD_RESPONSE',
  'LEASH_ERR_SHUTTING_DOWN',
  'LEASH_ERR_CONFIG',
  'LEASH_ERR_CREDENTIAL_SOURCE',
  'LEASH_ERR_USAGE',
  'LEASH_ERR_LISTEN',
  'LEASH_ERR_ADMIN',
  'LEASH_ERR_STATUS',
  'LEASH_ERR_SCOPES',
  'LEASH_ERR_AUTHORITY_UNAVAILABLE',
  'LEASH_ERR_AUTHORITY_REFUSED',
  'LEASH_ERR_LEASE_MALFORMED',
  // authority API answers (src/authority/errors.ts)
  'LEASH_ERR_AUTHORITY_BAD_REQUEST',
  'LEASH_ERR_UNAUTHENTICATED',
  'LEASH_ERR_POLICY_DENIED',
  'LEASH_ERR_NOT_FOUND',
  'LEASH_ERR_ISSUE_FAILED',
  'LEASH_ERR_RATE_LIMITED',
  'LEASH_ERR_INTERNAL',
  'LEASH_ERR_ATTESTATION_UNAVAILABLE',
  // CA and certificates (src/pki)
  'LEASH_ERR_CSR_INVALID',
  'LEASH_ERR_KEY_UNSUPPORTED',
  'LEASH_ERR_SPIFFE_ID_INVALID',
  'LEASH_ERR_CA_INVALID',
  'LEASH_ERR_CERT_REQUEST_INVALID',
  'LEASH_ERR_CLIENT_CERT_INVALID',
  'LEASH_ERR_X509_INVALID',
  // issuers (src/authority/issuers/errors.ts)
  'LEASH_ERR_ISSUER_SOURCE',
  'LEASH_ERR_ISSUER_KEYS',
  'LEASH_ERR_ISSUER_UPSTREAM',
  'LEASH_ERR_ISSUER_TIMEOUT',
  'LEASH_ERR_ISSUER_RESPONSE',
  'LEASH_ERR_ISSUER_EXEC',
  'LEASH_ERR_ISSUER_CONFIG',
  'LEASH_ERR_ISSUER_CLOSED',
  // store, join tokens, policy (src/authority/leases, src/authority/policy)
  'LEASH_ERR_STORE',
  'LEASH_ERR_STORE_RECORD',
  'LEASH_ERR_JOIN_TOKEN',
  'LEASH_ERR_JOIN_TOKEN_REQUEST',
  'LEASH_ERR_POLICY',
] as const;
