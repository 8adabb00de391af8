import { afterAll, beforeAll } from 'vitest';
import { startBusProxy, type BusProxy } from './bus-proxy.js';
import { startBusRedis, type BusRedis } from './bus-redis.js';
import { Redis } from 'ioredis';
import { redisConnector } from '../../src/bus/connect.js';
import { RedisRevocationPublisher, RedisRevocationSubscriber, type RedisSubscriberOptions } from '../../src/bus/redis.js';
import type { NewRevocation, Revocation } from '../../src/core/protocol.js';
import { sleep, waitFor as poll } from './wait.js';

/** A RedisRevocationSubscriber that records everything it reports. */
export interface Recorder {
  sub: RedisRevocationSubscriber;
  received: Revocation[];
  ids: Set<string>;
  channel: boolean[];
  malformed: string[];
  gaps: number;
  /** Order of gap() and channel(true) calls, for "gap before channel up". */
  log: string[];
  up: boolean;
}

export function recorder(url: string, options: Partial<RedisSubscriberOptions> = {}, gapDelayMs = 0): Recorder {
  const rec: Recorder = { sub: undefined as unknown as RedisRevocationSubscriber, received: [], ids: new Set(), channel: [], malformed: [], gaps: 0, log: [], up: false };
  rec.sub = new RedisRevocationSubscriber(
    { connect: redisConnector(url), heartbeatMs: 500, heartbeatDeadlineMs: 1_500, ...options },
    {
      revocation: (r) => {
        rec.received.push(r);
        rec.ids.add(r.id);
      },
      channel: (up) => {
        rec.up = up;
        rec.channel.push(up);
        rec.log.push(`channel:${up}`);
      },
      gap: async () => {
        rec.log.push('gap:start');
        if (gapDelayMs) await sleep(gapDelayMs);
        rec.gaps++;
        rec.log.push('gap:end');
      },
      malformed: (reason) => rec.malformed.push(reason),
    },
  );
  return rec;
}

export { sleep } from './wait.js';

export async function waitFor(cond: () => boolean, timeoutMs: number, what = 'condition'): Promise<void> {
  await poll(cond, { timeoutMs, intervalMs: 10, message: what });
}

/** A plain client for test-side commands (its own connection, never the bus'). */
export function plainClient(url: string): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 50, connectTimeout: 1_000 });
  c.on('error', () => undefined);
  return c;
}

export function publisherFor(url: string, windowMs = 3_600_000): { publisher: RedisRevocationPublisher; client: Redis } {
  const client = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => 20, connectTimeout: 1_000, commandTimeout: 1_000 });
  client.on('error', () => undefined);
  return { publisher: new RedisRevocationPublisher(client, windowMs), client };
}

export const rev = (i: number, extra: Partial<NewRevocation> = {}): NewRevocation => ({ scope: 'lease', target: `lease-${i}`, reason: `test ${i}`, by: 'test', ...extra });

/** Ids the recorder is missing out of `expected`. */
export const missing = (rec: Recorder, expected: Iterable<string>) => [...expected].filter((id) => !rec.ids.has(id));

/**
 * A Redis and a bus proxy in front of it (bus-proxy.ts: holds, partitions or pauses the
 * traffic it forwards), started before a test file's tests and stopped after them.
 */
export function redisBehindProxy(): { readonly redis: BusRedis; readonly proxy: BusProxy } {
  const started = {} as { redis: BusRedis; proxy: BusProxy };
  beforeAll(async () => {
    started.redis = await startBusRedis();
    started.proxy = await startBusProxy(started.redis.port);
  });
  afterAll(async () => {
    await started.proxy?.close();
    await started.redis?.stop();
  });
  return started;
}
