import type { LeaseRecord } from '../../core/protocol.js';

/**
 * Where the authority keeps state, so several replicas can serve one fleet: lease
 * records (never the secret value, only its fingerprint) expiring with the lease, and
 * one-time join tokens stored by hash, the identities the authority has certified and the
 * ones it has revoked (names and times only). Redis in production, memory for `leash dev`.
 */
export interface LeaseFilter {
  instance?: string;
  credential?: string;
  /** At most this many records (those expiring soonest), so a metrics scrape costs a bounded read. */
  limit?: number;
}

export interface JoinTokenRecord {
  identity: string;
  expiresAtMs: number;
  /** Hex HMAC-SHA256 over the record's key, identity and expiry (JoinTokens): an authority wrote it. */
  mac?: string;
}

export interface AuthorityStore {
  putLease(record: LeaseRecord): Promise<void>;
  /**
   * putLease, then isIdentityRevoked(record.instance), in that order: the answer reflects
   * every revocation mark set before the record was stored (a revocation that listed the
   * instance's leases before this one existed is caught). Optional: a store may do both in
   * one round trip; without it the caller makes the two calls.
   */
  putLeaseThenCheckRevoked?(record: LeaseRecord): Promise<boolean>;
  getLease(id: string): Promise<LeaseRecord | undefined>;
  /** True when it existed. */
  deleteLease(id: string): Promise<boolean>;
  listLeases(filter?: LeaseFilter): Promise<LeaseRecord[]>;
  /** Store a join token by the hash of its value; it expires on its own. */
  putJoinToken(hash: string, record: JoinTokenRecord): Promise<void>;
  /** Atomically take a join token: the first caller gets it, every later caller undefined. */
  takeJoinToken(hash: string, nowMs: number): Promise<JoinTokenRecord | undefined>;
  /**
   * Identity registry: `identity` (a SPIFFE ID) holds a certificate valid until
   * `expiresAtMs`. Written at bootstrap and renewal; the entry expires on its own. A later
   * call never shortens an entry (a renewal with a shorter certificate keeps the longer end).
   */
  putIdentity(identity: string, expiresAtMs: number): Promise<void>;
  /** True while some certificate recorded by putIdentity is unexpired. */
  hasIdentity(identity: string): Promise<boolean>;
  /**
   * The end (ms) of the longest certificate recorded by putIdentity, by the clock of the
   * replica that signed it; undefined when none is recorded (or it has expired).
   */
  identityUntil(identity: string): Promise<number | undefined>;
  /**
   * Mark `identity` revoked until `untilMs` (the end of the longest certificate it could
   * hold). A later call never shortens the mark. `minMs`: the mark lasts at least this long
   * from now by the *store's* clock (Redis' own), whatever the caller's clock says — a
   * replica whose clock is behind must not write a mark that Redis expires early.
   */
  revokeIdentity(identity: string, untilMs: number, minMs?: number): Promise<void>;
  /**
   * Wait (at most `timeoutMs`) until the store's replicas have every write made so far on
   * this store's connection: `acked` of `replicas`. Undefined when there is nothing to wait
   * for (no replicas, a store without them, a Cluster). Optional.
   */
  replicated?(timeoutMs: number): Promise<{ acked: number; replicas: number } | undefined>;
  /** True while a revocation mark for `identity` lasts. */
  isIdentityRevoked(identity: string): Promise<boolean>;
  close(): Promise<void>;
}
