/** `leash/verify`: for services that accept leash JWTs (docs/verify.md). */
export { createVerifier, type Verifier, type VerifierOptions, type VerifiedToken } from './verifier.js';
export { VerifyError, VERIFY_ERROR_CODES, httpStatusOf, type VerifyErrorCode } from './errors.js';
export type { RedisTarget } from '../bus/connect.js';
export { MemoryRevocationBus } from '../bus/memory.js';
