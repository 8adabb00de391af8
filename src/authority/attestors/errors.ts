import { AuthorityError } from '../errors.js';

/**
 * The evidence was checked and is not good: the caller's fault, answered 401 with the
 * reason (never the token). The sidecar shows the reason on /readyz and tries again later
 * with fresh evidence.
 */
export const attestationRefused = (reason: string) => new AuthorityError('LEASH_ERR_UNAUTHENTICATED', 401, reason);

/** The evidence could not be checked now (the Kubernetes API server down or odd): 503, retry. */
export const attestationUnavailable = (reason: string, cause?: unknown) =>
  new AuthorityError('LEASH_ERR_ATTESTATION_UNAVAILABLE', 503, reason, {}, cause === undefined ? undefined : { cause });
