import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/telemetry/logger.js';
import { UsageWriter } from '../../src/telemetry/usage-writer.js';
import type { UsageRequest } from '../../src/telemetry/usage.js';
import { LogSink } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

/** The usage writer against a real redis-server: one MULTI per flush, budgets, age trim. */
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

const req = (path: string): UsageRequest => ({ route: 'api', method: 'GET', path, status: 200, lease: 'L1', fingerprint: 'sha256:aaaaaaaaaaaa', denied: undefined });

async function fields(key: string): Promise<Array<Record<string, string>>> {
  const raw = (await client.xrange(key, '-', '+')) as Array<[string, string[]]>;
  return raw.map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 ? [] : [[v, f[i + 1]!]]))));
}

function writer(key: string, over: Partial<ConstructorParameters<typeof UsageWriter>[0]> = {}) {
  return new UsageWriter({
    client,
    key,
    logger: createLogger({ level: 'warn', destination: new LogSink() }),
    instance: 'i-1',
    credentialOf: () => 'lease:api',
    flushIntervalMs: 3_600_000,
    maxKeys: 1_000,
    maxLen: 100_000,
    maxAgeMs: 60_000,
    budget: { burst: 1_000, perMinute: 600 },
    ...over,
  });
}

describe('UsageWriter', () => {
  it('one MULTI per flush, nothing for an empty flush; old entries trimmed by age', async () => {
    for (let i = 1; i <= 50; i++) await client.xadd('w1', `${i}-0`, 'event', 'old');
    const w = writer('w1');
    const before = Number(/cmdstat_multi:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0);
    for (let i = 0; i < 1_000; i++) w.record(req(`/p/${i % 4}`));
    await w.flush();
    await w.flush(); // nothing recorded since: no write
    const after = Number(/cmdstat_multi:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0);
    expect(after - before).toBe(1);
    const entries = await fields('w1');
    expect(entries.filter((e) => e.event === 'old')).toEqual([]);
    expect(entries.map((e) => [e.path, e.count])).toEqual([['/p/0', '250'], ['/p/1', '250'], ['/p/2', '250'], ['/p/3', '250']]);
  });

  it('a flush whose XADDs Redis refused inside the MULTI (a stream frozen at the largest id) is warned about, not silent', async () => {
    // What a writer with XADD rights can do to everyone: after this id no XADD * succeeds.
    await client.xadd('w-frozen', '18446744073709551615-18446744073709551615', 'event', 'freeze');
    const logs = new LogSink();
    const w = writer('w-frozen', { logger: createLogger({ level: 'warn', destination: logs }) });
    w.record(req('/v1/models'));
    await w.flush();
    const warned = logs.lines.filter((l) => l.includes('audit usage flush failed'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/exhausted|ERR/i);
  });

  it('maxKeys and the stream budget bound the entries; the excess is one (other) entry, counts exact', async () => {
    const w = writer('w2', { maxKeys: 5, budget: { burst: 3, perMinute: 0.001 } });
    for (let i = 0; i < 100; i++) w.record(req(`/p/${i}`));
    await w.close();
    let entries = await fields('w2');
    expect(entries).toHaveLength(3);
    expect(entries[2]).toMatchObject({ path: '(other)', count: '98' });
    expect(entries[2]!.lease).toBeUndefined();
    // The budget is spent: the next flush is one (other) entry only.
    for (let i = 0; i < 10; i++) w.record(req(`/q/${i}`));
    await w.flush();
    entries = await fields('w2');
    expect(entries).toHaveLength(4);
    expect(entries[3]).toMatchObject({ path: '(other)', count: '10' });
  });
});
