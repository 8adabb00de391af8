import type { Redis } from 'ioredis';
import { redisConnector, type RedisTarget } from '../bus/connect.js';
import type { MemoryRevocationBus } from '../bus/memory.js';
import { RedisRevocationSubscriber, type RedisClient } from '../bus/redis.js';
import type { GapReason, RevocationSubscriber, SubscriberEvents } from '../bus/types.js';
import { parseRevocationEntry, revocationsKey, type Revocation } from '../core/protocol.js';

export type RevocationSource = { redis: RedisTarget; prefix?: string } | { bus: MemoryRevocationBus };

export interface ChannelEvents {
  revocation(r: Revocation): void;
  channel(up: boolean): void;
  /** Revocations may have been lost: the stream was trimmed past our position, or reset (Redis lost its data). */
  gap(why: GapReason): void;
  malformed(reason: string): void;
  /** This Redis user can read the authority's own records (bus/types.ts SubscriberEvents.exposed). */
  exposed?(): void;
}

/**
 * One subscription to the revocation bus. The Redis subscriber starts at the stream's tip
 * (right for a sidecar, whose leases postdate it); a verifier must also deny tokens revoked
 * before it started, so once subscribed it reads the whole stream (trimmed by the
 * authority to the longest TTL window) once. Duplicates are harmless (the deny-set is
 * idempotent). The channel counts as up once both are done and while the subscriber is up.
 */
export class RevocationChannel {
  private readonly subscriber: RevocationSubscriber;
  private readonly connect: (() => RedisClient) | undefined;
  private readonly key: string | undefined;
  private subscriberUp = false;
  private backfilled: boolean;
  private closed = false;
  private backfilling: Promise<void> | undefined;
  private readonly waiters = new Set<() => void>();
  private lastReported = false;

  constructor(
    source: RevocationSource,
    private readonly events: ChannelEvents,
  ) {
    const relay: SubscriberEvents = {
      revocation: (r) => events.revocation(r),
      channel: (up) => this.onSubscriber(up),
      gap: (why) => events.gap(why),
      malformed: (reason) => events.malformed(reason),
      exposed: () => events.exposed?.(),
    };
    if ('bus' in source) {
      this.subscriber = source.bus.subscriber(relay);
      this.backfilled = true; // in-process: no history to read
    } else {
      this.connect = redisConnector(source.redis);
      this.key = revocationsKey(source.prefix);
      this.subscriber = new RedisRevocationSubscriber({ connect: this.connect, prefix: source.prefix }, relay);
      this.backfilled = false;
    }
  }

  get up(): boolean {
    return this.subscriberUp && this.backfilled && !this.closed;
  }

  /** Starts the subscription; resolves when the channel is up the first time (never rejects; close() ends the wait). */
  async start(): Promise<void> {
    void this.subscriber.start().catch(() => undefined); // the subscriber reconnects by itself
    if (!this.up) await new Promise<void>((resolve) => this.waiters.add(resolve));
  }

  private onSubscriber(up: boolean): void {
    this.subscriberUp = up;
    if (up && !this.backfilled) void this.backfill();
    this.report();
  }

  private report(): void {
    const up = this.up;
    if (up !== this.lastReported) {
      this.lastReported = up;
      this.events.channel(up);
    }
    if (this.up || this.closed) {
      for (const w of this.waiters) w();
      this.waiters.clear();
    }
  }

  /** Read every entry of the stream once (paged); retried at the next channel-up if it fails. */
  private backfill(): Promise<void> {
    this.backfilling ??= (async () => {
      const client = this.connect!();
      client.on('error', () => undefined);
      try {
        let start = '-';
        for (;;) {
          const page = (await client.xrange(this.key!, start, '+', 'COUNT', 500)) as [string, string[]][];
          for (const [id, fields] of page) {
            const p = parseRevocationEntry(id, fields);
            if (p.ok) this.events.revocation(p.revocation);
            else this.events.malformed(p.message);
          }
          if (page.length < 500) break;
          start = `(${page[page.length - 1]![0]}`;
        }
        this.backfilled = true;
      } catch {
        // Redis went away mid-read: the next channel-up tries again.
      } finally {
        (client as Redis).disconnect();
        this.backfilling = undefined;
        this.report();
      }
    })();
    return this.backfilling;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.subscriber.close();
    await this.backfilling;
    this.report();
  }
}
