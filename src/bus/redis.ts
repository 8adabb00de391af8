import type { Cluster, Redis } from 'ioredis';
import { compareIds, parseRevocation, type NewRevocation, type Revocation, type RevocationPublisher, type RevocationSubscriber, type SubscriberEvents } from './types.js';

/**
 * The Redis revocation bus (DESIGN §7): stream `<prefix>revocations` (source of truth,
 * trimmed by MINID to the longest TTL window) + pub/sub channel of the same name (fast
 * path). Built around the measured traps of ioredis and pub/sub (PITFALLS.md):
 * - pub/sub is at-most-once → after every (re)subscription the stream is read from the
 *   last seen id (minus an overlap, for publishers whose XADD and PUBLISH interleave);
 * - `ready` fires before the re-SUBSCRIBE is acknowledged → autoResubscribe is off and
 *   the catch-up starts only once our own SUBSCRIBE has resolved; messages that arrive
 *   during the catch-up are held and applied after it;
 * - a half-open socket goes unnoticed for minutes → PING on the subscriber connection
 *   with a deadline; a missed deadline forces a reconnect;
 * - the subscriber has its own connection (a subscribed connection can't run XRANGE);
 * - secrets never go into a command: revocations carry ids and names only.
 */
export type RedisClient = Redis | Cluster;

export interface RedisBusOptions {
  prefix?: string;
  clock?: () => number;
}

const keyOf = (prefix: string) => `${prefix}revocations`;

export class RedisRevocationPublisher implements RevocationPublisher {
  private readonly key: string;
  constructor(
    private readonly client: RedisClient,
    private readonly windowMs: number,
    private readonly options: RedisBusOptions = {},
  ) {
    this.key = keyOf(options.prefix ?? 'leash:');
  }

  async publish(r: NewRevocation): Promise<Revocation> {
    const now = (this.options.clock ?? Date.now)();
    const at = new Date(now).toISOString();
    // Entries older than the longest lease are of no use to anyone: trim by time, not count.
    const id = (await this.client.xadd(this.key, 'MINID', '~', `${Math.max(0, now - this.windowMs)}-0`, '*', 'scope', r.scope, 'target', r.target, 'reason', r.reason, 'at', at, 'by', r.by)) as string;
    const full: Revocation = { id, ...r, at };
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
}

type Entry = [string, string[]];

export class RedisRevocationSubscriber implements RevocationSubscriber {
  private readonly key: string;
  private readonly sub: RedisClient;
  private readonly cmd: RedisClient;
  private readonly seen = new Set<string>();
  private lastId: string | undefined;
  private catchingUp = false;
  private held: Revocation[] = [];
  private up = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly options: RedisSubscriberOptions,
    private readonly events: SubscriberEvents,
  ) {
    this.key = keyOf(options.prefix ?? 'leash:');
    this.sub = options.connect();
    this.cmd = options.connect();
    for (const c of [this.sub, this.cmd]) c.on('error', () => undefined); // reconnects on its own; state is reported via channel()
    this.sub.on('message', (_channel: string, message: string) => this.onMessage(message));
    this.sub.on('ready', () => void this.resync());
    for (const ev of ['close', 'end', 'reconnecting']) this.sub.on(ev, () => this.setUp(false));
  }

  /** Resolves once subscribed and caught up the first time (or rejects if Redis is not reachable now). */
  async start(): Promise<void> {
    const interval = this.options.heartbeatMs ?? 2_000;
    this.heartbeat = setInterval(() => void this.beat(), interval);
    this.heartbeat.unref();
    if ((this.sub as Redis).status === 'ready') await this.resync();
    else await new Promise<void>((resolve) => this.sub.once('ready', () => resolve()));
    await this.syncing;
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.events.channel(up);
  }

  private resync(): Promise<void> {
    this.syncing ??= this.subscribeAndCatchUp().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async subscribeAndCatchUp(): Promise<void> {
    if (this.closed) return;
    this.catchingUp = true;
    this.held = [];
    try {
      await this.sub.subscribe(this.key); // resolves on the server's acknowledgement
      await this.catchUp();
      this.catchingUp = false;
      const held = this.held.sort((a, b) => compareIds(a.id, b.id));
      this.held = [];
      for (const r of held) this.apply(r);
      this.setUp(true);
    } catch {
      this.catchingUp = false;
      this.setUp(false);
      // The connection will come back with another 'ready'; a failed catch-up is retried then,
      // or at the next heartbeat if the connection stayed up.
    }
  }

  private async catchUp(): Promise<void> {
    if (this.lastId === undefined) {
      // First start: revocations published before this sidecar existed concern leases it
      // never held (the authority refuses revoked identities itself). Start at the tip.
      const last = (await this.cmd.xrevrange(this.key, '+', '-', 'COUNT', 1)) as Entry[];
      this.lastId = last[0]?.[0] ?? '0-0';
      return;
    }
    if (await this.trimmedPastUs()) await this.events.gap();
    const [ms] = this.lastId.split('-');
    let start = `${Math.max(0, Number(ms) - (this.options.overlapMs ?? 5_000))}-0`;
    for (;;) {
      const page = (await this.cmd.xrange(this.key, start, '+', 'COUNT', 500)) as Entry[];
      for (const [id, fields] of page) this.onEntry(id, fields);
      if (page.length < 500) break;
      start = `(${page[page.length - 1]![0]}`;
    }
  }

  /** True when Redis deleted an entry newer than our position (XINFO max-deleted-entry-id, Redis ≥ 7). */
  private async trimmedPastUs(): Promise<boolean> {
    let info: unknown[];
    try {
      info = (await this.cmd.xinfo('STREAM', this.key)) as unknown[];
    } catch {
      return false; // no stream yet: nothing was ever published, nothing lost
    }
    const i = info.indexOf('max-deleted-entry-id');
    const maxDeleted = i >= 0 ? String(info[i + 1]) : '0-0';
    return this.lastId !== undefined && compareIds(maxDeleted, this.lastId) > 0;
  }

  private onEntry(id: string, fields: string[]): void {
    const obj: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) obj[fields[i]!] = fields[i + 1]!;
    const r = parseRevocation(obj, id);
    if (typeof r === 'string') return this.events.malformed(`stream entry ${id}: ${r}`);
    this.apply(r);
  }

  private onMessage(message: string): void {
    let body: unknown;
    try {
      body = JSON.parse(message);
    } catch {
      return this.events.malformed('pub/sub message is not JSON');
    }
    if (!body || typeof body !== 'object') return this.events.malformed('pub/sub message is not an object');
    const r = parseRevocation(body as Record<string, unknown>, String((body as { id?: unknown }).id));
    if (typeof r === 'string') return this.events.malformed(`pub/sub message: ${r}`);
    if (this.catchingUp) this.held.push(r);
    else this.apply(r);
  }

  private apply(r: Revocation): void {
    if (this.seen.has(r.id)) return;
    this.seen.add(r.id);
    if (this.seen.size > (this.options.remember ?? 10_000)) this.seen.delete(this.seen.values().next().value!);
    if (this.lastId === undefined || compareIds(r.id, this.lastId) > 0) this.lastId = r.id;
    this.events.revocation(r);
  }

  /** PING with a deadline: a half-open connection is cut and reconnected (ioredis #240, #1451). */
  private async beat(): Promise<void> {
    if (this.closed) return;
    const sub = this.sub as Redis;
    if (sub.status !== 'ready') return;
    const deadline = this.options.heartbeatDeadlineMs ?? 3_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), deadline)));
    const answer = await Promise.race([sub.ping().then(() => 'ok' as const, () => 'error' as const), timedOut]);
    clearTimeout(timer);
    if (answer === 'ok') {
      if (!this.up && !this.syncing) void this.resync();
      return;
    }
    this.setUp(false);
    sub.disconnect(true);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.setUp(false);
    for (const c of [this.sub, this.cmd]) c.disconnect();
  }
}
