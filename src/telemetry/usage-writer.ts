import type { ChainableCommander } from 'ioredis';
import type { Logger } from 'pino';
import { type Clock, systemClock } from '../core/clock.js';
import type { TokenBucket } from '../core/token-bucket.js';
import { minIdBefore, streamIdMs } from '../core/protocol.js';
import type { AuditStreamLimit } from './audit.js';
import { UsageAggregator, usageFields, type UsageRequest } from './usage.js';

/** The Redis calls the writer makes: one MULTI per flush (ioredis Redis and Cluster both have it). */
export interface UsageRedis {
  multi(): ChainableCommander;
  /** The age trim, after the MULTI, from the id Redis gave the last entry (its clock, not ours). */
  xtrim?(key: string, minid: 'MINID', approx: '~', threshold: string): Promise<unknown>;
}

export interface UsageWriterOptions {
  client: UsageRedis;
  /** The stream, `<prefix>audit`. */
  key: string;
  logger: Logger;
  instance: string | (() => string);
  /** The route's credential label at flush time (lease name, `env:NAME`, …). */
  credentialOf?: (route: string) => string | undefined;
  flushIntervalMs: number;
  maxKeys: number;
  maxLen: number;
  /** Entries older than this are trimmed (`XTRIM MINID ~`) with each flush; 0 = no age limit. */
  maxAgeMs: number;
  /** This instance's share of the stream, in usage entries. */
  budget: AuditStreamLimit;
  clock?: Clock;
}

/** Pure: refill `bucket` to `nowMs` and take up to `want` whole tokens. */
export function takeTokens(bucket: TokenBucket, nowMs: number, limit: AuditStreamLimit, want: number): { granted: number; bucket: TokenBucket } {
  const tokens = Math.min(limit.burst, bucket.tokens + (Math.max(0, nowMs - bucket.atMs) * limit.perMinute) / 60_000);
  const granted = Math.max(0, Math.min(want, Math.floor(tokens)));
  return { granted, bucket: { tokens: tokens - granted, atMs: Math.max(nowMs, bucket.atMs) } };
}

/**
 * Writes `usage` summaries (docs/audit.md) to the audit stream: every flushInterval, all
 * keys seen since the last flush in one MULTI (XADD per entry, then the age trim), never a
 * write per request. Best effort like the lifecycle sink: a Redis outage drops that flush's
 * summaries (the per-request log lines remain) and is logged at most once a minute.
 */
export class UsageWriter {
  private readonly agg: UsageAggregator;
  private readonly clock: Clock;
  private bucket: TokenBucket;
  private timer: NodeJS.Timeout | undefined;
  private lastWarn = -Infinity;
  private inFlight: Promise<void> = Promise.resolve();
  /** Flushes that wrote something (one MULTI each): for tests and the log. */
  batches = 0;

  constructor(private readonly o: UsageWriterOptions) {
    this.agg = new UsageAggregator(o.maxKeys);
    this.clock = o.clock ?? systemClock;
    this.bucket = { tokens: o.budget.burst, atMs: this.clock.monotonicMs() };
  }

  /** The hot path: one Map increment. */
  record(r: UsageRequest): void {
    this.agg.add(r, this.clock.wallMs());
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.flush(), this.o.flushIntervalMs);
    this.timer.unref();
  }

  /** Writes what was counted since the last flush (nothing when nothing was). */
  flush(): Promise<void> {
    if (this.agg.size === 0) return this.inFlight;
    const t = takeTokens(this.bucket, this.clock.monotonicMs(), this.o.budget, this.agg.size);
    this.bucket = t.bucket;
    // With no token at all, one `(other)` entry still goes out: the stream shows the gap.
    const summaries = this.agg.take(Math.max(1, t.granted));
    const nowMs = this.clock.wallMs();
    const instance = typeof this.o.instance === 'string' ? this.o.instance : this.o.instance();
    const multi = this.o.client.multi();
    for (const s of summaries) {
      const credential = s.route !== undefined ? this.o.credentialOf?.(s.route) : undefined;
      multi.xadd(this.o.key, 'MAXLEN', '~', this.o.maxLen, '*', ...(usageFields(s, instance, credential, nowMs) as [string, string]));
    }
    // Without xtrim of its own (a bare MULTI client), the trim goes in the MULTI by our clock.
    const trimAfter = this.o.maxAgeMs > 0 && this.o.client.xtrim !== undefined;
    if (this.o.maxAgeMs > 0 && !trimAfter) multi.xtrim(this.o.key, 'MINID', '~', minIdBefore(nowMs, this.o.maxAgeMs));
    this.batches++;
    const warn = (err: unknown) => {
      if (Date.now() - this.lastWarn > 60_000) {
        this.lastWarn = Date.now();
        this.o.logger.warn({ err }, 'audit usage flush failed: these summaries are in the request log only');
      }
    };
    // EXEC resolves even when commands in it failed (a key that is not a stream, a stream
    // whose last id is the largest: every XADD '*' refused): each result carries its error.
    const done = multi.exec().then(async (results) => {
      const failed = results?.find(([err]) => err);
      if (failed) warn(failed[0]);
      // Counted back from the newest id Redis gave (its clock made every id in the stream):
      // a sidecar whose clock is ahead trimmed what the rest of the fleet had just written.
      const ms = streamIdMs(results?.filter(([err, id]) => !err && typeof id === 'string').at(-1)?.[1]);
      if (trimAfter && Number.isFinite(ms)) await this.o.client.xtrim!(this.o.key, 'MINID', '~', minIdBefore(ms, this.o.maxAgeMs)).catch(warn);
    }, warn);
    this.inFlight = this.inFlight.then(() => done);
    return this.inFlight;
  }

  /** Stops the timer and writes what is pending (shutdown). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
