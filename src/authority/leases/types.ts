import type { LeaseRecord } from '../../core/protocol.js';

/**
 * Where the authority keeps state, so several replicas can serve one fleet: lease
 * records (never the secret value, only its fingerprint) expiring with the lease, and
 * one-time join tokens stored by hash. Redis in production, memory for `leash dev`.
 */
export interface LeaseFilter {
  instance?: string;
  credential?: string;
}

export interface JoinTokenRecord {
  identity: string;
  expiresAtMs: number;
}

export interface AuthorityStore {
  putLease(record: LeaseRecord): Promise<void>;
  getLease(id: string): Promise<LeaseRecord | undefined>;
  /** True when it existed. */
  deleteLease(id: string): Promise<boolean>;
  listLeases(filter?: LeaseFilter): Promise<LeaseRecord[]>;
  /** Store a join token by the hash of its value; it expires on its own. */
  putJoinToken(hash: string, record: JoinTokenRecord): Promise<void>;
  /** Atomically take a join token: the first caller gets it, every later caller undefined. */
  takeJoinToken(hash: string, nowMs: number): Promise<JoinTokenRecord | undefined>;
  close(): Promise<void>;
}
