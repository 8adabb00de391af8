import type { Cluster, Redis } from 'ioredis';
import { compareIds, epochKeyOf, isStreamId, minIdBefore, redisTimeMs, parseRevocationEntry, parseRevocationMessage, revocationFields, revocationsKey, storeKeys, type NewRevocation, type Revocation } from '../core/protocol.js';
import { sharedLoopStall } from '../core/loop-stall.js';
import { currentEpoch, epochReset } from './epoch.js';
import type { RevocationPublisher, RevocationSubscriber, SubscriberEvents } from './types.js';

/**
 * The Redis revocation bus (DESIGN §7): stream `<prefix>revocations` (source of truth,
 * trimmed by MINID to the longest TTL window) + pub/sub channel of the same name (fast
 * path). Built around the measured traps of ioredis and pub/sub (docs/pitfalls.md):
 * - pub/sub is at-most-once → after every (re)subscription the stream is read from the
 *   last seen id (minus an overlap, for publishers whose XADD and PUBLISH interleave);
 * - `ready` fires before the re-SUBSCRIBE is acknowledged → autoResubscribe is off and
 *   the catch-up starts only once our own SUBSCRIBE has resolved; messages that arrive
 *   during the catch-up are held and applied after it;
 * - a half-open socket goes unnoticed for minutes → PING on the subscriber connection
 *   with a deadline; a missed deadline forces a reconnect;
 * - the subscriber has its own connection (a subscribed connection can't run XRANGE);
 * - on Redis Cluster, ioredis subscribes on a connection of its own that it replaces (and
 *   re-subscribes) silently when it drops: the Cluster emits nothing and a PING on it
 *   goes to another node. That connection is tracked (trackClusterSubscriber) so its loss
 *   triggers the same catch-up, and the heartbeat PINGs it;
 * - a Redis that restarts without persistence comes back with no stream at all, which a
 *   subscriber at position 0-0 cannot tell from "nothing published yet": the stream's
 *   epoch (epoch.ts), read on every catch-up, tells a reset apart;
 * - secrets never go into a command: revocations carry ids and names only.
 */
export type RedisClient = Redis | Cluster;

export interface RedisBusOptions {
  prefix?: string;
  clock?: () => number;
}

export interface RedisPublisherOptions extends RedisBusOptions {
  /**
   * The stream's epoch changed since this publisher last saw it (a reset: Redis lost its
   * data). Called once per change, before the publication that noticed it is written.
   */
  onReset?: () => Promise<void> | void;
}

export class RedisRevocationPublisher implements RevocationPublisher {
  private readonly key: string;
  private readonly epochKey: string;
  /** The epoch seen last (undefined: not looked yet). */
  private epoch: string | null | undefined;
  private checking: Promise<boolean> | undefined;
  private resetCount = 0;
  constructor(
    private readonly client: RedisClient,
    private readonly windowMs: number,
    private readonly options: RedisPublisherOptions = {},
  ) {
    this.key = revocationsKey(options.prefix);
    this.epochKey = epochKeyOf(this.key);
  }

  /**
   * Read (and create when absent) the stream's epoch; true when it changed since the last
   * look — the stream was reset — after onReset has run. Called before every publication,
   * and by the authority at start and periodically.
   */
  checkEpoch(): Promise<boolean> {
    // One at a time, shared by concurrent callers: a reset is acted on (onReset) once.
    this.checking ??= this.lookAtEpoch().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async lookAtEpoch(): Promise<boolean> {
    const now = (this.options.clock ?? Date.now)();
    const epoch = await currentEpoch(this.client, this.epochKey, true, now);
    const reset = epochReset(this.epoch, epoch);
    if (reset) {
      this.resetCount++;
      await this.options.onReset?.();
    }
    this.epoch = epoch;
    return reset;
  }

  /**
   * The epoch as of the last check that has finished — onReset's write-back included (it is
   * updated only after). undefined: never looked; null: none existed then.
   */
  get settledEpoch(): string | null | undefined {
    return this.epoch;
  }

  /** The epoch stored now, read only (never created): one GET. */
  readEpoch(): Promise<string | null> {
    return this.client.get(this.epochKey);
  }

  /** Resets seen so far (counted when noticed, before onReset runs). */
  get resets(): number {
    return this.resetCount;
  }

  async publish(r: NewRevocation): Promise<Revocation> {
    // An absent epoch is written before the entry: a subscriber that remembered the
    // previous one sees the reset however the two interleave with its catch-up.
    await this.checkEpoch();
    // `at` takes back whatever was issued up to it (verifiers deny iat ≤ at, the authority
    // deletes those leases): never earlier than Redis' clock, so a replica whose clock is
    // behind does not leave out what the other replicas issued in the meantime.
    const redisNow = await this.redisNow();
    const at = Math.max((this.options.clock ?? Date.now)(), redisNow ?? 0);
    return this.write({ ...r, at: new Date(at).toISOString() }, redisNow);
  }

  /**
   * Write a revocation seen before a reset again, with its original time (`at` decides
   * what a verifier denies): the authority re-seeds a reset stream with what it remembers.
   */
  async republish(r: Omit<Revocation, 'id'>): Promise<Revocation> {
    return this.write(r, await this.redisNow());
  }

  /** Redis' own clock (ms): the one stream ids are made of. undefined when TIME fails (then our clock). */
  private async redisNow(): Promise<number | undefined> {
    try {
      const ms = redisTimeMs(await this.client.time());
      return Number.isFinite(ms) ? ms : undefined;
    } catch {
      return undefined;
    }
  }

  private async write(r: Omit<Revocation, 'id'>, redisNow: number | undefined): Promise<Revocation> {
    // Entries older than the longest lease are of no use to anyone: trim by time, not count.
    // By Redis' clock, which made the ids: a replica whose clock is ahead would trim entries
    // other replicas had just added.
    const now = redisNow ?? (this.options.clock ?? Date.now)();
    const id = (await this.client.xadd(this.key, 'MINID', '~', minIdBefore(now, this.windowMs), '*', ...revocationFields(r))) as string;
    const full: Revocation = { id, scope: r.scope, target: r.target, reason: r.reason, at: r.at, by: r.by };
    await this.client.publish(this.key, JSON.stringify(full));
    return full;
  }

  async close(): Promise<void> {}
}

export interface RedisSubscriberOptions extends RedisBusOptions {
  /** Makes a new connection (the subscriber needs two of its own). */
  connect: () => RedisClient;
  heartbeatMs?: number;
  heartbeatDeadlineMs?: number;
  /** How far before the last seen id a catch-up starts re-reading (deduplicated by id). */
  overlapMs?: number;
  /** Ids remembered for deduplication. */
  remember?: number;
  /**
   * Re-read the stream this often even while the channel is up (0: never), so a
   * revocation whose PUBLISH never happened (publisher died between XADD and PUBLISH,
   * or its PUBLISH failed) still arrives without waiting for a reconnect. Default 30 s.
   */
  pollMs?: number;
  /**
   * Create the stream's epoch when absent (default true). A subscriber whose Redis user may
   * not write only reads it; until some publisher has written one it cannot detect a reset
   * at position 0-0 (docs/revocation.md).
   */
  writeEpoch?: boolean;
}

type Entry = [string, string[]];

export class RedisRevocationSubscriber implements RevocationSubscriber {
  private readonly key: string;
  private readonly epochKey: string;
  /** The stream's epoch at our last catch-up (undefined: before the first; null: none written yet). */
  private epoch: string | null | undefined;
  private readonly sub: RedisClient;
  private readonly cmd: RedisClient;
  /** Ids read from the stream, remembered for deduplication. */
  private readonly seen = new Set<string>();
  /**
   * Revocations applied from pub/sub, by id, with what they revoke: the stream read that
   * follows does not deliver the same one again. Kept apart from `seen` because a pub/sub
   * id is only the publisher's word: forgetting one never raises the floor.
   */
  private readonly hinted = new Map<string, string>();
  /**
   * Anything at or below this id counts as seen: the stream tip at first start (older
   * revocations predate us, and a later overlap re-read must not deliver them), raised to
   * the highest id `seen` forgets. Only ids read from the stream raise it: 10,001 forged
   * far-future ids by pub/sub once put every real revocation after them below it.
   */
  private floor: string | undefined;
  private lastId: string | undefined;
  /**
   * Where the next re-read of the stream starts (less the overlap): the newest id *read from
   * the stream*. `lastId` also moves with pub/sub ids, which say nothing about what the
   * stream holds below them: a revocation whose PUBLISH never happened sits there, and a
   * re-read from a later pub/sub id would never find it.
   */
  private readFrom: string | undefined;
  private catchingUp = false;
  private held: Revocation[] = [];
  private up = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private syncing: Promise<void> | undefined;
  /** Bumped on every (re)connection of the subscriber connection. */
  private generation = 0;
  /** A 'ready' (or a failed sync) arrived while a sync was running: run another. */
  private again = false;
  private lastPoll = 0;
  private polling = false;
  private exposureChecked = false;
  /** Cluster only: the ioredis subscriber connection we listen to (see trackClusterSubscriber). */
  private tracked: Redis | undefined;

  constructor(
    private readonly options: RedisSubscriberOptions,
    private readonly events: SubscriberEvents,
  ) {
    this.key = revocationsKey(options.prefix);
    this.epochKey = epochKeyOf(this.key);
    this.sub = options.connect();
    this.cmd = options.connect();
    for (const c of [this.sub, this.cmd]) c.on('error', () => undefined); // reconnects on its own; state is reported via channel()
    this.sub.on('message', (_channel: string, message: string) => this.onMessage(message));
    this.sub.on('ready', () => {
      this.generation++;
      void this.resync();
    });
    for (const ev of ['close', 'end', 'reconnecting']) {
      this.sub.on(ev, () => {
        this.generation++;
        this.setUp(false);
      });
    }
  }

  /** Resolves once subscribed and caught up the first time (or rejects if Redis is not reachable now). */
  async start(): Promise<void> {
    const interval = this.options.heartbeatMs ?? 2_000;
    // Started now: it can only tell of stalls it was beating through (see ping).
    sharedLoopStall();
    this.heartbeat = setInterval(() => void this.beat(), interval);
    this.heartbeat.unref();
    if ((this.sub as Redis).status === 'ready') await this.resync();
    else await new Promise<void>((resolve) => this.sub.once('ready', () => resolve()));
    while (this.syncing) await this.syncing;
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.events.channel(up);
  }

  /**
   * One sync at a time; a 'ready' that arrives while one runs is not dropped (the running
   * sync may belong to a connection that is already gone): another sync follows it.
   */
  private resync(): Promise<void> {
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.again = false;
        await this.subscribeAndCatchUp();
      } while (this.again && !this.closed && (this.sub as Redis).status === 'ready');
    })().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async subscribeAndCatchUp(): Promise<void> {
    if (this.closed) return;
    const generation = this.generation;
    this.catchingUp = true;
    this.held = [];
    try {
      // Resolves on the server's acknowledgement; only then is the catch-up safe (a
      // revocation published from now on reaches us by pub/sub, earlier ones by the stream).
      await this.sub.subscribe(this.key);
      this.trackClusterSubscriber();
      await this.catchUp();
      this.catchingUp = false;
      const held = this.held.sort((a, b) => compareIds(a.id, b.id));
      this.held = [];
      // The connection we subscribed on died meanwhile: its replacement is not subscribed.
      const lost = generation !== this.generation || (this.sub as Redis).status !== 'ready' || this.subscribedConnection()?.status !== 'ready';
      for (const r of held) this.apply(r, !lost, true);
      if (lost) {
        this.again = true;
        return;
      }
      this.setUp(true);
    } catch {
      this.catchingUp = false;
      const held = this.held;
      this.held = [];
      // Applied at once, but our position stays where the stream was last read up to:
      // moving it past the range we failed to read would skip that range for good.
      for (const r of held) this.apply(r, false, true);
      this.setUp(false);
      // A command connection that timed out may be half-open (commands queue on it
      // forever): replace it. The sync is retried at the next 'ready' or heartbeat.
      if ((this.cmd as Redis).status === 'ready') this.cmd.disconnect(true);
    }
  }

  private async catchUp(): Promise<void> {
    // Read before the stream: a reset after this read drops our connections, and the
    // catch-up that follows the reconnection reads the epoch again.
    const epoch = await currentEpoch(this.cmd, this.epochKey, this.options.writeEpoch ?? true, (this.options.clock ?? Date.now)());
    if (this.lastId === undefined) {
      // First start: revocations published before this sidecar existed concern leases it
      // never held (the authority refuses revoked identities itself). Start at the tip.
      const last = (await this.cmd.xrevrange(this.key, '+', '-', 'COUNT', 1)) as Entry[];
      this.lastId = last[0]?.[0] ?? '0-0';
      this.readFrom = this.lastId;
      this.floor = this.lastId;
      this.epoch = epoch;
      return;
    }
    if (epochReset(this.epoch, epoch)) {
      // The stream was recreated from nothing: whatever was published before it may be
      // lost, our position included (even 0-0: "nothing yet" then is no proof now). The
      // owner reconciles; only then does the new stream become our history, read whole
      // (its ids are a new series: the old position, floor and dedupe set mean nothing).
      await this.events.gap('reset');
      this.epoch = epoch;
      this.lastId = '0-0';
      this.readFrom = '0-0';
      this.floor = undefined;
      this.seen.clear();
    } else {
      // First epoch we can see (none had been written when we looked): remember it.
      if (this.epoch === null) this.epoch = epoch;
      const trimmed = await this.trimmedPastUs();
      if (trimmed) await this.events.gap('trimmed');
      if (typeof trimmed === 'object') {
        // The stream never generated our position: it went back (an older snapshot), or
        // our position came from a forged pub/sub id. Its own ids are our history from
        // here (reported once, not at every poll; ids it hands out again are not "seen").
        this.lastId = trimmed.behind;
        this.readFrom = trimmed.behind;
        this.floor = undefined;
        this.seen.clear();
        this.hinted.clear();
      }
    }
    // readFrom ≤ lastId: both are set together, and only stream reads move readFrom.
    const [ms] = (this.readFrom ?? this.lastId).split('-');
    let start = `${Math.max(0, Number(ms) - (this.options.overlapMs ?? 5_000))}-0`;
    for (;;) {
      const page = (await this.cmd.xrange(this.key, start, '+', 'COUNT', 500)) as Entry[];
      for (const [id, fields] of page) this.onEntry(id, fields);
      if (page.length < 500) break;
      start = `(${page[page.length - 1]![0]}`;
    }
  }

  /**
   * True when revocations newer than our position may be gone:
   * - our last seen entry was trimmed: the oldest entry left is newer than it (XTRIM and
   *   XADD MINID do not update max-deleted-entry-id, measured on Redis 7.0, so this is
   *   the only trace a trim leaves). Conservative: if nothing had been published between
   *   our entry and the oldest one left, nothing was lost, but that cannot be known;
   * - the stream is empty but ids past ours were generated, or had nothing to read yet
   *   (position 0-0) and something was deleted;
   * - an entry newer than our position was deleted (max-deleted-entry-id, XDEL);
   * - the stream itself is gone although we had read from it (deleted, or lost by a
   *   restart without persistence);
   * - the stream went back: its newest id ever is older than our position (Redis restarted
   *   from an older snapshot, RDB; the epoch is in the snapshot too, unchanged), or our
   *   position came from a pub/sub id the stream never generated (forged): `behind` is
   *   the stream's newest id then.
   */
  private async trimmedPastUs(): Promise<boolean | { behind: string }> {
    const lastId = this.lastId;
    if (lastId === undefined) return false;
    let info: unknown[];
    try {
      info = (await this.cmd.xinfo('STREAM', this.key)) as unknown[];
    } catch (err) {
      if (/no such key/i.test(String((err as Error)?.message))) return lastId !== '0-0';
      throw err;
    }
    const field = (name: string): unknown => {
      const i = info.indexOf(name);
      return i >= 0 ? info[i + 1] : undefined;
    };
    const maxDeleted = String(field('max-deleted-entry-id') ?? '0-0');
    if (compareIds(maxDeleted, lastId) > 0) return true;
    const lastGenerated = field('last-generated-id');
    if (isStreamId(lastGenerated) && compareIds(lastGenerated, lastId) < 0) return { behind: lastGenerated };
    const length = Number(field('length') ?? 0);
    const added = Number(field('entries-added') ?? length);
    const first = field('first-entry') as Entry | null | undefined;
    if (!first) return compareIds(String(field('last-generated-id') ?? '0-0'), lastId) > 0;
    if (lastId === '0-0') return added > length;
    return compareIds(first[0], lastId) > 0;
  }

  private onEntry(id: string, fields: string[]): void {
    const p = parseRevocationEntry(id, fields);
    if (!p.ok) return this.events.malformed(p.message);
    this.apply(p.revocation);
  }

  private onMessage(message: string): void {
    const p = parseRevocationMessage(message);
    if (!p.ok) return this.events.malformed(p.message);
    const r = p.revocation;
    if (this.catchingUp) this.held.push(r);
    // Outside a synced subscription (a catch-up failed, or the channel is down) a message
    // is applied but does not move our position: only a completed catch-up, or a message
    // on a subscription that has been continuous since one, may.
    else this.apply(r, this.up, true);
  }

  /** A revocation read from the stream (onEntry), or from pub/sub (onMessage, `fromPubSub`; `advance` as there). */
  private apply(r: Revocation, advance = true, fromPubSub = false): void {
    if (this.seen.has(r.id)) return;
    if (this.floor !== undefined && compareIds(r.id, this.floor) <= 0) return;
    const what = `${r.scope}\n${r.target}\n${r.at}`;
    if (fromPubSub) {
      if (this.hinted.get(r.id) === what) return;
      this.hinted.set(r.id, what);
      if (this.hinted.size > (this.options.remember ?? 10_000)) this.hinted.delete(this.hinted.keys().next().value!);
    } else {
      this.seen.add(r.id);
      if (this.seen.size > (this.options.remember ?? 10_000)) {
        const old = this.seen.values().next().value!;
        this.seen.delete(old);
        if (this.floor === undefined || compareIds(old, this.floor) > 0) this.floor = old;
      }
    }
    if (advance && (this.lastId === undefined || compareIds(r.id, this.lastId) > 0)) this.lastId = r.id;
    if (advance && !fromPubSub && (this.readFrom === undefined || compareIds(r.id, this.readFrom) > 0)) this.readFrom = r.id;
    // Read from the stream after pub/sub brought it: delivered once. (The same id with
    // other contents is another revocation: a stream that went back hands ids out again.)
    if (!fromPubSub && this.hinted.get(r.id) === what) {
      this.hinted.delete(r.id);
      return;
    }
    this.events.revocation(r);
  }

  /**
   * The connection that carries our subscription: the client itself, or for a Cluster the
   * one ioredis picked (private `subscriber.getInstance()`, ioredis 5/6; undefined when
   * that is gone, and then only the periodic poll covers a lost subscription).
   */
  private subscribedConnection(): Redis | undefined {
    if (!this.sub.isCluster) return this.sub as Redis;
    const inner = (this.sub as unknown as { subscriber?: { getInstance?: () => Redis | null } }).subscriber;
    return inner?.getInstance?.() ?? undefined;
  }

  /**
   * Cluster only. ioredis' ClusterSubscriber never reconnects its subscriber connection:
   * when it ends, it opens a new one (maybe to another node) and re-subscribes there,
   * without any event on the Cluster. Whatever was published in between reached nobody,
   * so follow that connection: its loss takes the channel down, its replacement's 'ready'
   * (or finding a replacement already ready) runs a catch-up, as a reconnect does.
   */
  private trackClusterSubscriber(): void {
    if (!this.sub.isCluster || this.closed) return;
    const conn = this.subscribedConnection();
    if (!conn || conn === this.tracked) return;
    const replaced = this.tracked !== undefined;
    this.tracked = conn;
    conn.on('ready', () => {
      if (this.tracked !== conn || this.closed) return;
      this.generation++;
      void this.resync();
    });
    for (const ev of ['close', 'end']) {
      conn.on(ev, () => {
        if (this.tracked !== conn || this.closed) return;
        this.generation++;
        this.setUp(false);
        // ClusterSubscriber creates the replacement in its own 'end' handler.
        setImmediate(() => this.trackClusterSubscriber());
      });
    }
    if (replaced) {
      this.generation++;
      this.setUp(false);
      if (conn.status === 'ready') void this.resync();
      // Otherwise its 'ready' resyncs; a replacement nobody uses stays lazily unconnected,
      // and the heartbeat resyncs then (our SUBSCRIBE connects it).
    }
  }

  /** PING with a deadline: a half-open connection is cut and reconnected (ioredis #240, #1451). */
  private async beat(): Promise<void> {
    if (this.closed) return;
    this.trackClusterSubscriber();
    const sub = this.sub as Redis;
    // The command connection can be half-open too (catch-ups would time out on it until
    // the OS notices, minutes later): same deadline, it is replaced when missed.
    void this.ping(this.cmd as Redis).then((ok) => ok || this.closed || (this.cmd as Redis).status !== 'ready' || this.cmd.disconnect(true));
    if (sub.status !== 'ready') return;
    // On a Cluster, sub.ping() would go to any node: PING the subscribed connection itself.
    const conn = this.subscribedConnection() ?? sub;
    const answer = (await this.ping(conn)) ? 'ok' : 'timeout';
    if (this.closed) return;
    if (answer === 'ok') {
      if (!this.up && !this.syncing) void this.resync();
      else if (this.up && !this.syncing) void this.poll();
      return;
    }
    this.setUp(false);
    // A Cluster's subscriber connection does not reconnect: ending it makes ioredis open another.
    conn.disconnect(true);
  }

  private async ping(c: Redis): Promise<boolean> {
    if (c.status !== 'ready') return true;
    const deadline = this.options.heartbeatDeadlineMs ?? 3_000;
    const sentAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), deadline)));
    const answer = await Promise.race([c.ping().then(() => true, () => false), timedOut]);
    clearTimeout(timer);
    // Missed while this process was itself stopped or starved (SIGSTOP, a frozen cgroup):
    // a loop turn that starts after a stall runs its due timers (this deadline, ioredis'
    // command timeout) before it reads the sockets, where the answer may already be, with
    // a revocation behind it. Dropping the connection then threw that away and took the
    // channel down. No verdict on Redis: the next beat pings again.
    if (!answer && sharedLoopStall().stalledSince(sentAt, performance.now())) return true;
    return answer;
  }

  /** The periodic re-read of the stream while up (see pollMs). */
  private async poll(): Promise<void> {
    const every = this.options.pollMs ?? 30_000;
    const now = Date.now();
    if (every <= 0 || this.polling || now - this.lastPoll < every) return;
    this.lastPoll = now;
    this.polling = true;
    try {
      await this.catchUp();
      if (!this.exposureChecked) {
        this.exposureChecked = true;
        await this.checkExposure();
      }
    } catch {
      if ((this.cmd as Redis).status === 'ready') this.cmd.disconnect(true);
    } finally {
      this.polling = false;
    }
  }

  /**
   * Can this user read the authority's records? A subscriber needs the revocation keys only:
   * a user limited to them gets NOPERM here; a Redis that is not the authority's has no lease
   * index (0). Only a 1 (the index is there, and readable) is reported.
   */
  private async checkExposure(): Promise<void> {
    const found = await this.cmd.exists(storeKeys(this.options.prefix).all).catch(() => 0);
    if (found === 1) this.events.exposed?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.setUp(false);
    for (const c of [this.sub, this.cmd]) c.disconnect();
  }
}
