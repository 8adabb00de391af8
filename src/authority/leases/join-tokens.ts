import { createHash, randomBytes } from 'node:crypto';
import { JoinTokenError, JoinTokenRequestError } from './errors.js';
import type { AuthorityStore } from './types.js';

/**
 * One-time join tokens for bootstrap (`leash token create`). The token is shown once to
 * the operator; the store keeps only its sha256, so a Redis dump or a MONITOR session
 * yields nothing redeemable. Redeeming takes the record atomically (single use).
 */
export const JOIN_TOKEN_PREFIX = 'leash_jt_';

/** `join:<name>` identities become spiffe://<trustDomain>/join/<name>; names are DNS-label-like. */
export const IDENTITY_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** 32 random bytes in base64url are 43 characters. */
const TOKEN_SHAPE = /^leash_jt_[A-Za-z0-9_-]{43}$/;

export function isValidIdentityName(name: string): boolean {
  return IDENTITY_NAME_PATTERN.test(name);
}

/** Hex sha256 of the whole token string, prefix included: the store key. */
export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class JoinTokens {
  readonly #store: AuthorityStore;

  constructor(store: AuthorityStore) {
    this.#store = store;
  }

  /** Mint a token for `identityName`, valid for `ttlMs` from `nowMs`. Returns the token (shown once). */
  async create(identityName: string, ttlMs: number, nowMs: number): Promise<string> {
    if (typeof identityName !== 'string' || !isValidIdentityName(identityName)) {
      throw new JoinTokenRequestError(`identity name ${JSON.stringify(String(identityName).slice(0, 80))} is invalid: it must match ${IDENTITY_NAME_PATTERN.source}`);
    }
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new JoinTokenRequestError(`join token TTL must be a positive duration (got ${ttlMs} ms)`, { identity: identityName });
    }
    const token = JOIN_TOKEN_PREFIX + randomBytes(32).toString('base64url');
    await this.#store.putJoinToken(hashJoinToken(token), { identity: identityName, expiresAtMs: nowMs + ttlMs });
    return token;
  }

  /**
   * The identity name the token was made for, consuming the token. Unknown, used, expired
   * and malformed tokens all throw the same JoinTokenError. Lookup is by hash, so timing
   * reveals nothing about stored tokens. Store failures propagate as StoreError.
   */
  async redeem(token: string, nowMs: number): Promise<string> {
    if (typeof token !== 'string' || !TOKEN_SHAPE.test(token)) throw new JoinTokenError();
    const record = await this.#store.takeJoinToken(hashJoinToken(token), nowMs);
    if (!record || record.expiresAtMs <= nowMs || !isValidIdentityName(record.identity)) throw new JoinTokenError();
    return record.identity;
  }
}
