import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { redisAuditSink } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { UsageWriter } from '../../src/telemetry/usage-writer.js';
import { LogSink } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sleep } from '../helpers/wait.js';

/**
 * The audit stream (`leash:audit`) is written by every authority replica and every sidecar,
 * and trimmed by age (`audit.maxAge`, `XTRIM MINID`) against its ids — which Redis makes
 * from its own clock. Each writer computed the threshold from its own clock: one whose
 * clock was ahead by more than maxAge trimmed everything the others had just written, and
 * `leash trace` then found no holder for a value leased minutes before. Both writers (the
 * lifecycle sink of authority and sidecars, the sidecars' usage writer) now count back from
 * the id Redis gave their newest entry.
 */
const HOUR = 3_600_000;
let redis: TestRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  await client.config('SET', 'stream-node-max-entries', '10');
});
afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

const ahead = (ms: number): Clock => ({ monotonicMs: () => performance.now(), wallMs: () => Date.now() + ms });
const logger = () => createLogger({ level: 'warn', destination: new LogSink() });

/** 100 entries from 10 minutes ago (kept by a 1 h maxAge) and 100 from 2 h ago (trimmed). */
async function seed(key: string): Promise<void> {
  for (const [from, tag] of [[Date.now() - 2 * HOUR, 'old'], [Date.now() - 10 * 60_000, 'recent']] as const) {
    for (let i = 0; i < 100; i++) await client.xadd(key, `${from + i}-0`, 'event', 'lease.issued', 'at', new Date(from + i).toISOString(), 'tag', tag);
  }
}
async function tags(key: string): Promise<Record<string, number>> {
  const raw = (await client.xrange(key, '-', '+')) as Array<[string, string[]]>;
  const out: Record<string, number> = {};
  for (const [, f] of raw) {
    const t = f.includes('tag') ? f[f.indexOf('tag') + 1]! : 'new';
    out[t] = (out[t] ?? 0) + 1;
  }
  return out;
}

const WRITERS = [
  {
    name: 'lifecycle sink (authority, sidecar)',
    write: async (key: string, clock: Clock) => {
      const sink = redisAuditSink(client, key, logger(), 100_000, undefined, undefined, clock, HOUR);
      sink('lease.issued', { lease: 'L1', fingerprint: 'sha256:aaaaaaaaaaaa' });
      sink.close();
    },
  },
  {
    name: 'usage writer (sidecar)',
    write: async (key: string, clock: Clock) => {
      const w = new UsageWriter({
        client,
        key,
        logger: logger(),
        instance: 'i-1',
        flushIntervalMs: HOUR,
        maxKeys: 100,
        maxLen: 100_000,
        maxAgeMs: HOUR,
        budget: { burst: 100, perMinute: 100 },
        clock,
      });
      w.record({ route: 'api', method: 'GET', path: '/x', status: 200, lease: 'L1', fingerprint: 'sha256:aaaaaaaaaaaa', denied: undefined });
      await w.flush();
    },
  },
];
const SKEWS = [0, 2 * HOUR, 30 * 24 * HOUR];

describe('audit stream age trim by Redis’ clock', () => {
  for (const w of WRITERS) {
    it.each(SKEWS)(`${w.name}, writer clock ahead by %d ms: the others’ recent entries stay, old ones go`, async (skew) => {
      const key = `leash:audit:${w.name.length}:${skew}`;
      await seed(key);
      await w.write(key, ahead(skew));
      await sleep(100);
      expect(await tags(key)).toEqual({ recent: 100, new: 1 });
    });
  }
});
