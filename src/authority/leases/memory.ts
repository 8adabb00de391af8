import { systemClock, type Clock } from '../../core/clock.js';
import type { LeaseRecord } from '../../core/protocol.js';
import { StoreError } from './errors.js';
import { checkIdentityEntry, checkJoinTokenRecord, checkLeaseRecord, copyLease } from './record.js';
import type { AuthorityStore, JoinTokenRecord, LeaseFilter } from './types.js';

export interface MemoryStoreOptions {
  /** Wall clock for lease expiry (`wallMs`); tests inject one they can advance. */
  clock?: Pick<Clock, 'wallMs'>;
}

/**
 * The single-process store of `leash dev` (and of tests): same semantics as RedisStore.
 * A lease is live while `now < expiresAtMs`; expired entries are invisible at once and
 * swept lazily, so memory stays bounded by the live set plus one sweep interval.
 */
export class MemoryStore implements AuthorityStore {
  readonly #clock: Pick<Clock, 'wallMs'>;
  readonly #leases = new Map<string, LeaseRecord>();
  readonly #joinTokens = new Map<string, JoinTokenRecord>();
  /** identity → end of its longest recorded certificate. */
  readonly #identities = new Map<string, number>();
  /** identity → end of its revocation mark. */
  readonly #revoked = new Map<string, number>();
  #writesSinceSweep = 0;
  #closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  async putLease(record: LeaseRecord): Promise<void> {
    this.#open();
    const copy = checkLeaseRecord(record);
    this.#maybeSweep();
    this.#leases.set(copy.id, copy);
  }

  async putLeaseThenCheckRevoked(record: LeaseRecord): Promise<boolean> {
    await this.putLease(record);
    return this.isIdentityRevoked(record.instance);
  }

  async getLease(id: string): Promise<LeaseRecord | undefined> {
    this.#open();
    const r = this.#live(id);
    return r && copyLease(r);
  }

  async deleteLease(id: string): Promise<boolean> {
    this.#open();
    const existed = this.#live(id) !== undefined;
    this.#leases.delete(id);
    return existed;
  }

  async listLeases(filter: LeaseFilter = {}): Promise<LeaseRecord[]> {
    this.#open();
    const now = this.#clock.wallMs();
    const out: LeaseRecord[] = [];
    for (const [id, r] of this.#leases) {
      if (r.expiresAtMs <= now) {
        this.#leases.delete(id);
        continue;
      }
      if (filter.instance !== undefined && r.instance !== filter.instance) continue;
      if (filter.credential !== undefined && r.credential !== filter.credential) continue;
      out.push(copyLease(r));
    }
    if (filter.limit !== undefined && out.length > filter.limit) out.sort((a, b) => a.expiresAtMs - b.expiresAtMs).length = filter.limit;
    return out;
  }

  async putJoinToken(hash: string, record: JoinTokenRecord): Promise<void> {
    this.#open();
    const copy = checkJoinTokenRecord(hash, record);
    this.#maybeSweep();
    this.#joinTokens.set(hash, copy);
  }

  async takeJoinToken(hash: string, nowMs: number): Promise<JoinTokenRecord | undefined> {
    this.#open();
    // Get-and-delete in one synchronous step: no await between, so exactly one caller wins.
    const r = this.#joinTokens.get(hash);
    this.#joinTokens.delete(hash);
    if (!r || r.expiresAtMs <= nowMs) return undefined;
    return { ...r };
  }

  async putIdentity(identity: string, expiresAtMs: number): Promise<void> {
    this.#open();
    checkIdentityEntry(identity, expiresAtMs, 'identity');
    this.#maybeSweep();
    this.#extend(this.#identities, identity, expiresAtMs);
  }

  async hasIdentity(identity: string): Promise<boolean> {
    this.#open();
    return this.#lasts(this.#identities, identity);
  }

  async identityUntil(identity: string): Promise<number | undefined> {
    this.#open();
    return this.#lasts(this.#identities, identity) ? this.#identities.get(identity) : undefined;
  }

  async revokeIdentity(identity: string, untilMs: number, minMs = 0): Promise<void> {
    this.#open();
    checkIdentityEntry(identity, untilMs, 'revocation');
    this.#maybeSweep();
    // One process, one clock: the store's clock is the caller's.
    this.#extend(this.#revoked, identity, Math.max(untilMs, this.#clock.wallMs() + minMs));
  }

  async isIdentityRevoked(identity: string): Promise<boolean> {
    this.#open();
    return this.#lasts(this.#revoked, identity);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#leases.clear();
    this.#joinTokens.clear();
    this.#identities.clear();
    this.#revoked.clear();
  }

  /** Set `key`'s end to `untilMs` unless it already lasts longer; an end already past stores nothing. */
  #extend(map: Map<string, number>, key: string, untilMs: number): void {
    if (untilMs <= this.#clock.wallMs()) return;
    if ((map.get(key) ?? 0) < untilMs) map.set(key, untilMs);
  }

  #lasts(map: Map<string, number>, key: string): boolean {
    const until = map.get(key);
    if (until === undefined) return false;
    if (until > this.#clock.wallMs()) return true;
    map.delete(key);
    return false;
  }

  #open(): void {
    if (this.#closed) throw new StoreError('the lease store is closed');
  }

  #live(id: string): LeaseRecord | undefined {
    const r = this.#leases.get(id);
    if (!r) return undefined;
    if (r.expiresAtMs <= this.#clock.wallMs()) {
      this.#leases.delete(id);
      return undefined;
    }
    return r;
  }

  /** Amortised cleanup: every 256 writes, drop whatever has expired. */
  #maybeSweep(): void {
    if (++this.#writesSinceSweep < 256) return;
    this.#writesSinceSweep = 0;
    const now = this.#clock.wallMs();
    for (const [id, r] of this.#leases) if (r.expiresAtMs <= now) this.#leases.delete(id);
    for (const [h, r] of this.#joinTokens) if (r.expiresAtMs <= now) this.#joinTokens.delete(h);
    for (const map of [this.#identities, this.#revoked]) for (const [k, until] of map) if (until <= now) map.delete(k);
  }
}
