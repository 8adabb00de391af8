import { createHash } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { LeashError } from '../../core/errors.js';
import { systemClock, type Clock } from '../../core/clock.js';
import { redisTimeMs, storeKeys, type LeaseRecord } from '../../core/protocol.js';
import { StoreError, StoreRecordError } from './errors.js';
import { checkIdentityEntry, checkJoinTokenRecord, checkLeaseRecord, parseJoinTokenRecord, parseLeaseRecord } from './record.js';
import type { AuthorityStore, JoinTokenRecord, LeaseFilter } from './types.js';

export interface CorruptRecord {
  /** Full Redis key (prefix included) whose content could not be used. */
  key: string;
  kind: 'lease' | 'join-token';
}

export interface RedisStoreOptions {
  /** Key prefix, default `leash:` (DEFAULT_KEY_PREFIX; DESIGN §7: configurable). */
  prefix?: string;
  /** Wall clock deciding what listing treats as expired; default the system clock. */
  clock?: Pick<Clock, 'wallMs'>;
  /** Told about a record that does not parse; the record is then treated as absent. */
  onCorrupt?: (record: CorruptRecord) => void;
}

/**
 * Keys (prefix `leash:` by default): storeKeys in core/protocol.ts lists them.
 *
 * Every command touches exactly one key (no MULTI, no multi-key script), so the store works
 * unchanged on Redis Cluster without hash tags. Writes go index first, record second: a
 * crash in between leaves an index entry without a record, which listing drops and
 * cleans, never a stored lease that listing (and so `revoke --instance`) would miss. On
 * one node a lease's writes are one pipeline (ordered, one round trip; see #putLease).
 */

/**
 * Drop up to INDEX_SWEEP entries already expired, ZADD, then set the key's expiry to its
 * highest score: an index outlives none of its entries by more than nothing and is never
 * left without a TTL. One key, so Cluster-safe. Scores are integer ms, which Redis prints as
 * plain integers, valid for PEXPIREAT.
 *
 * The sweep: while a fleet keeps leasing, some entry is always live and pushes the key's
 * expiry forward, so the key never expires and every id ever added would stay (a year of
 * churn: tens of millions). "Expired" is by the earlier of the caller's clock (ARGV[3]) and
 * Redis' (TIME), as listing decides it: a replica whose clock is ahead drops no live entry.
 * At most INDEX_SWEEP per add, lowest scores first (ZREMRANGEBYRANK on a sorted set ordered
 * by expiry): more than one add brings in, so the index shrinks to its live entries, and a
 * backlog left by an older version is worked off in slices, never one long blocking call.
 */
const INDEX_SWEEP = 100;
const INDEX_ADD = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = tonumber(ARGV[3])
if mine and mine < now then now = mine end
local n = redis.call('ZCOUNT', KEYS[1], '-inf', string.format('%.0f', now))
if n > ${INDEX_SWEEP} then n = ${INDEX_SWEEP} end
if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1) end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], top[2])
return 1`;
const INDEX_ADD_SHA = createHash('sha1').update(INDEX_ADD).digest('hex');

/**
 * Set KEYS[1] to ARGV[1] (an end in ms) expiring then, unless it already holds a later end:
 * an identity entry or revocation mark is extended, never shortened. ARGV[2], when given:
 * the end is at least that many ms past Redis' own clock (TIME), so a caller whose clock is
 * behind cannot write an end that Redis has already passed. One key: Cluster-safe.
 */
const EXTEND = `local untilMs = tonumber(ARGV[1])
if ARGV[2] then
  local t = redis.call('TIME')
  local floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
  if floor > untilMs then untilMs = floor end
end
local cur = tonumber(redis.call('GET', KEYS[1]) or '')
if cur and cur >= untilMs then return 0 end
local v = string.format('%.0f', untilMs)
redis.call('SET', KEYS[1], v, 'PXAT', v)
return 1`;
const EXTEND_SHA = createHash('sha1').update(EXTEND).digest('hex');

export class RedisStore implements AuthorityStore {
  readonly #client: Redis | Cluster;
  readonly #owned: boolean;
  readonly #keys: ReturnType<typeof storeKeys>;
  readonly #clock: Pick<Clock, 'wallMs'>;
  readonly #onCorrupt: ((record: CorruptRecord) => void) | undefined;
  #closed = false;

  /**
   * Pass a client to share it (close() then leaves it open: the caller owns it), or a URL
   * / RedisOptions to let the store create and own one.
   */
  constructor(client: Redis | Cluster | RedisOptions | string, options: RedisStoreOptions = {}) {
    if (client instanceof Redis || client instanceof Cluster) {
      this.#client = client;
      this.#owned = false;
    } else {
      this.#client = typeof client === 'string' ? new Redis(client) : new Redis(client);
      this.#owned = true;
    }
    this.#keys = storeKeys(options.prefix);
    this.#clock = options.clock ?? systemClock;
    this.#onCorrupt = options.onCorrupt;
  }

  /** The keys this store uses, for operators and tests. */
  keys(): ReturnType<typeof storeKeys> {
    return this.#keys;
  }

  async putLease(record: LeaseRecord): Promise<void> {
    await this.#putLease(record, false);
  }

  async putLeaseThenCheckRevoked(record: LeaseRecord): Promise<boolean> {
    return this.#putLease(record, true);
  }

  /**
   * The lease path's writes — three index adds, then the record — and, with `check`, the
   * instance's revocation mark read after them. On one node (or Sentinel) that is ONE
   * pipeline, one round trip: Redis runs a connection's commands in the order sent, so
   * "index first, record second, mark read last" holds as it did with three awaits (a
   * connection lost mid-pipeline runs a prefix of it). On a Cluster the keys live in
   * different slots — a pipeline cannot span them nor order them across nodes — so the
   * steps stay sequential there (the indexes still go out together).
   */
  #putLease(record: LeaseRecord, check: boolean): Promise<boolean> {
    const r = checkLeaseRecord(record);
    const k = this.keys();
    const mark = k.revokedInstance(r.instance);
    return this.#run('store a lease', async () => {
      const expireAt = Math.ceil(r.expiresAtMs);
      const indexes = [k.byInstance(r.instance), k.byCredential(r.credential), k.all];
      if (this.#client instanceof Cluster) {
        const now = this.#clock.wallMs();
        if (expireAt <= now) await this.#client.del(k.lease(r.id));
        else {
          await Promise.all(indexes.map((key) => this.#indexAdd(key, expireAt, r.id, now)));
          await this.#client.set(k.lease(r.id), JSON.stringify(r), 'PXAT', expireAt);
        }
        return check && (await this.#client.exists(mark)) === 1;
      }
      const p = this.#client.pipeline();
      const now = this.#clock.wallMs();
      const expired = expireAt <= now;
      if (expired) {
        // Already expired: storing it would be invisible anyway; an overwrite still removes the old one.
        p.del(k.lease(r.id));
      } else {
        // EVAL, not EVALSHA: a NOSCRIPT reply (Redis restarted, SCRIPT FLUSH) would leave the
        // record below stored without its index entries. Redis caches the script by digest.
        for (const key of indexes) p.eval(INDEX_ADD, 1, key, expireAt, r.id, now);
        p.set(k.lease(r.id), JSON.stringify(r), 'PXAT', expireAt);
      }
      if (check) p.exists(mark);
      const replies = await p.exec();
      if (!replies) throw new Error('pipeline discarded');
      const failed = replies.find(([err]) => err)?.[0];
      if (failed) {
        // An index add refused (WRONGTYPE, OOM…) while the record went in: take the record
        // back, so that listing (and `revoke --instance`) never misses a stored lease.
        const indexFailed = !expired && replies.slice(0, 3).some(([err]) => err);
        if (indexFailed && !replies[3]?.[0]) await this.#client.del(k.lease(r.id));
        throw failed;
      }
      return check && replies[replies.length - 1]?.[1] === 1;
    });
  }

  async getLease(id: string): Promise<LeaseRecord | undefined> {
    const key = this.keys().lease(id);
    const text = await this.#run('read a lease', () => this.#client.get(key));
    return this.#liveLease(key, id, text, this.#clock.wallMs());
  }

  async deleteLease(id: string): Promise<boolean> {
    const k = this.keys();
    return this.#run('delete a lease', async () => {
      const text = await this.#client.getdel(k.lease(id));
      if (text === null) return false;
      const r = this.#liveLease(k.lease(id), id, text, this.#clock.wallMs());
      const parsed = r ?? parseLeaseRecord(text);
      if (parsed) await Promise.all([k.byInstance(parsed.instance), k.byCredential(parsed.credential), k.all].map((key) => this.#client.zrem(key, id)));
      return r !== undefined;
    });
  }

  async listLeases(filter: LeaseFilter = {}): Promise<LeaseRecord[]> {
    const k = this.keys();
    const index = filter.instance !== undefined ? k.byInstance(filter.instance) : filter.credential !== undefined ? k.byCredential(filter.credential) : k.all;
    return this.#run('list leases', async () => {
      // "Expired" by our clock and by Redis' (which expires the records), whichever is
      // earlier: a replica whose clock is ahead must not drop other replicas' live leases
      // from the indexes (they would be missed by every listing and revocation after).
      const now = Math.min(this.#clock.wallMs(), await this.#redisNow());
      // Lazy cleanup: entries at or past their expiry leave the index on every read.
      await this.#client.zremrangebyscore(index, '-inf', now);
      const ids =
        filter.limit === undefined
          ? await this.#client.zrangebyscore(index, `(${now}`, '+inf')
          : await this.#client.zrangebyscore(index, `(${now}`, '+inf', 'LIMIT', 0, filter.limit);
      // One GET per record (not MGET): keys of different records live in different Cluster slots.
      const texts = await Promise.all(ids.map((id) => this.#client.get(k.lease(id))));
      const out: LeaseRecord[] = [];
      const stale: string[] = [];
      ids.forEach((id, i) => {
        const text = texts[i] ?? null;
        const r = this.#liveLease(k.lease(id), id, text, now);
        if (!r) {
          if (text === null) stale.push(id); // record gone (deleted, expired, or never written)
          return;
        }
        // The id may have been re-put under another instance/credential: that index entry is stale.
        if (filter.instance !== undefined && r.instance !== filter.instance) return void stale.push(id);
        if (filter.credential !== undefined && r.credential !== filter.credential) {
          if (filter.instance === undefined) stale.push(id);
          return;
        }
        out.push(r);
      });
      if (stale.length > 0) await this.#client.zrem(index, ...stale);
      return out.sort((a, b) => a.expiresAtMs - b.expiresAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    });
  }

  async putJoinToken(hash: string, record: JoinTokenRecord): Promise<void> {
    const r = checkJoinTokenRecord(hash, record);
    const expireAt = Math.ceil(r.expiresAtMs);
    if (expireAt <= this.#clock.wallMs()) return; // could never be redeemed
    const ok = await this.#run('store a join token', () => this.#client.set(this.keys().joinToken(hash), JSON.stringify(r), 'PXAT', expireAt, 'NX'));
    // 256-bit random tokens do not collide; a repeat means a caller stored the same token twice.
    if (ok === null) throw new StoreRecordError('join token refused: one with the same hash already exists');
  }

  async takeJoinToken(hash: string, nowMs: number): Promise<JoinTokenRecord | undefined> {
    const key = this.keys().joinToken(hash);
    // GETDEL is atomic: of any number of concurrent takers, on any number of connections, one gets it.
    const text = await this.#run('take a join token', () => this.#client.getdel(key));
    if (text === null) return undefined;
    const r = parseJoinTokenRecord(text);
    if (!r) {
      this.#corrupt(key, 'join-token');
      return undefined;
    }
    return r.expiresAtMs > nowMs ? r : undefined;
  }

  async putIdentity(identity: string, expiresAtMs: number): Promise<void> {
    checkIdentityEntry(identity, expiresAtMs, 'identity');
    await this.#extend('record an identity', this.keys().identity(identity), expiresAtMs);
  }

  async hasIdentity(identity: string): Promise<boolean> {
    const key = this.keys().identity(identity);
    return (await this.#run('read an identity', () => this.#client.exists(key))) === 1;
  }

  async identityUntil(identity: string): Promise<number | undefined> {
    const key = this.keys().identity(identity);
    const text = await this.#run('read an identity', () => this.#client.get(key));
    const until = text === null ? NaN : Number(text);
    return Number.isFinite(until) ? until : undefined;
  }

  async revokeIdentity(identity: string, untilMs: number, minMs?: number): Promise<void> {
    checkIdentityEntry(identity, untilMs, 'revocation');
    await this.#extend('mark an identity revoked', this.keys().revokedInstance(identity), untilMs, minMs);
  }

  async replicated(timeoutMs: number): Promise<{ acked: number; replicas: number } | undefined> {
    // On a Cluster the writes went to several masters: WAIT would have to go to each.
    if (this.#client instanceof Cluster) return undefined;
    const client = this.#client;
    return this.#run('wait for its replicas', async () => {
      const info = await client.info('replication').catch((err: unknown) => {
        // A user that may not run INFO: replication cannot be checked (nor waited for).
        if (/NOPERM/i.test(String((err as Error)?.message))) return '';
        throw err;
      });
      const replicas = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
      if (!(replicas > 0)) return undefined;
      const acked = Number(await client.wait(replicas, Math.max(1, Math.round(timeoutMs))));
      return { acked, replicas };
    });
  }

  async isIdentityRevoked(identity: string): Promise<boolean> {
    const key = this.keys().revokedInstance(identity);
    return (await this.#run('read a revocation mark', () => this.#client.exists(key))) === 1;
  }

  async #extend(what: string, key: string, untilMs: number, minMs?: number): Promise<void> {
    const until = Math.ceil(untilMs);
    await this.#run(what, async () => {
      if (minMs === undefined) {
        if (until <= this.#clock.wallMs()) return; // already over: nothing to keep
        await this.#script(EXTEND_SHA, EXTEND, key, until);
      } else await this.#script(EXTEND_SHA, EXTEND, key, until, Math.ceil(minMs));
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#owned) return;
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }

  #liveLease(key: string, id: string, text: string | null, now: number): LeaseRecord | undefined {
    if (text === null) return undefined;
    const r = parseLeaseRecord(text);
    if (!r || r.id !== id) {
      this.#corrupt(key, 'lease');
      return undefined;
    }
    return r.expiresAtMs > now ? r : undefined;
  }

  #corrupt(key: string, kind: CorruptRecord['kind']): void {
    try {
      this.#onCorrupt?.({ key, kind });
    } catch {
      // A reporting hook must not turn a bad record into a failed request.
    }
  }

  #indexAdd(key: string, score: number, id: string, nowMs: number): Promise<void> {
    return this.#script(INDEX_ADD_SHA, INDEX_ADD, key, score, id, nowMs);
  }

  /** Redis' clock (ms); Infinity when TIME is refused (a user without it: our clock alone then). */
  async #redisNow(): Promise<number> {
    try {
      const ms = redisTimeMs(await this.#client.time());
      return Number.isFinite(ms) ? ms : Infinity;
    } catch (err) {
      if (/NOPERM|unknown command/i.test(String((err as Error)?.message))) return Infinity;
      throw err;
    }
  }

  /** A one-key script by its SHA, loaded on NOSCRIPT. */
  async #script(sha: string, source: string, key: string, ...args: (string | number)[]): Promise<void> {
    try {
      await this.#client.evalsha(sha, 1, key, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      await this.#client.eval(source, 1, key, ...args);
    }
  }

  /** Backend failures surface as StoreError (coded); our own coded errors pass through. */
  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError('the lease store is closed');
    try {
      return await fn();
    } catch (err) {
      if (err instanceof LeashError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new StoreError(`lease store (redis) could not ${what}: ${reason}`, {}, { cause: err });
    }
  }
}
