import { systemClock, type Clock } from '../../core/clock.js';
import type { LeaseRecord } from '../../core/protocol.js';
import { StoreError } from './errors.js';
import { checkJoinTokenRecord, checkLeaseRecord, copyLease } from './record.js';
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

  async close(): Promise<void> {
    this.#closed = true;
    this.#leases.clear();
    this.#joinTokens.clear();
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
  }
}
