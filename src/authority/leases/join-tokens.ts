import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { JoinTokenError, JoinTokenRequestError } from './errors.js';
import type { AuthorityStore } from './types.js';

/**
 * One-time join tokens for bootstrap (`leash token create`). The token is shown once to
 * the operator; the store keeps only a keyed hash of it (HMAC-SHA256 under a key derived
 * from the CA's private key, which only authorities hold), so a Redis dump or a MONITOR
 * session yields nothing redeemable. Each record carries a MAC over its key, identity and
 * expiry: whoever can write to the authority's Redis (a sidecar given the same user for
 * its audit stream) cannot mint a token for an identity of its choice, nor change the
 * identity of a pending one. Redeeming takes the record atomically (single use).
 */
export const JOIN_TOKEN_PREFIX = 'leash_jt_';

/** `join:<name>` identities become spiffe://<trustDomain>/join/<name>; names are DNS-label-like. */
export const IDENTITY_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** 32 random bytes in base64url are 43 characters. */
const TOKEN_SHAPE = /^leash_jt_[A-Za-z0-9_-]{43}$/;

export function isValidIdentityName(name: string): boolean {
  return IDENTITY_NAME_PATTERN.test(name);
}

/** Hex sha256 of a string: a well-formed store key for tests and fixtures (the real keys are keyed: JoinTokens.storeKey). */
export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** What a join token's MAC covers: its store key, identity and expiry. */
const macInput = (storeKey: string, identity: string, expiresAtMs: number): string => `leash join token v1\n${storeKey}\n${identity}\n${expiresAtMs}`;

export class JoinTokens {
  readonly #store: AuthorityStore;
  readonly #key: Uint8Array;

  /** `key`: at least 32 bytes, the same on every replica (CertificateAuthority.deriveKey). */
  constructor(store: AuthorityStore, key: Uint8Array) {
    if (key.length < 32) throw new Error('join token key must be at least 32 bytes');
    this.#store = store;
    this.#key = key;
  }

  /** The store key of a token: hex HMAC-SHA256 of the whole token string, prefix included. */
  storeKey(token: string): string {
    return createHmac('sha256', this.#key).update(token, 'utf8').digest('hex');
  }

  #mac(storeKey: string, identity: string, expiresAtMs: number): string {
    return createHmac('sha256', this.#key).update(macInput(storeKey, identity, expiresAtMs), 'utf8').digest('hex');
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
    const key = this.storeKey(token);
    const expiresAtMs = nowMs + ttlMs;
    await this.#store.putJoinToken(key, { identity: identityName, expiresAtMs, mac: this.#mac(key, identityName, expiresAtMs) });
    return token;
  }

  /**
   * The identity name the token was made for, consuming the token. Unknown, used, expired
   * and malformed tokens all throw the same JoinTokenError. Lookup is by hash, so timing
   * reveals nothing about stored tokens. A record whose MAC does not verify (written by
   * anything but an authority, or altered since) is refused the same way. Store failures
   * propagate as StoreError.
   */
  async redeem(token: string, nowMs: number): Promise<string> {
    if (typeof token !== 'string' || !TOKEN_SHAPE.test(token)) throw new JoinTokenError();
    const key = this.storeKey(token);
    const record = await this.#store.takeJoinToken(key, nowMs);
    if (!record || record.expiresAtMs <= nowMs || !isValidIdentityName(record.identity)) throw new JoinTokenError();
    const expected = Buffer.from(this.#mac(key, record.identity, record.expiresAtMs), 'hex');
    const given = typeof record.mac === 'string' && /^[0-9a-f]{64}$/.test(record.mac) ? Buffer.from(record.mac, 'hex') : undefined;
    if (!given || !timingSafeEqual(given, expected)) throw new JoinTokenError();
    return record.identity;
  }
}
