import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { redisConnector } from '../../src/bus/connect.js';
import { currentEpoch } from '../../src/bus/epoch.js';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { redisTargetFrom } from '../../src/bus/target.js';
import { epochKeyOf, revocationsKey } from '../../src/core/protocol.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { plainClient, sleep, waitFor } from '../helpers/bus-harness.js';

/**
 * The bus' connection options (connect.ts: reconnects capped at 500 ms, commands time out,
 * no autoResubscribe; passwords set in the URL, re-read at every reconnection), the
 * epoch's read-only fallback and the publisher's reset count.
 */
let redis: BusRedis;
let admin: Redis;
const closers: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  redis = await startBusRedis();
  admin = plainClient(redis.url);
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  admin.disconnect();
  await redis.stop();
});

const track = <T extends { disconnect(): void; on(ev: string, f: () => void): unknown }>(c: T): T => {
  c.on('error', () => undefined);
  closers.push(() => c.disconnect());
  return c;
};

describe('bus connections', () => {
  it('reconnect fast (capped at 500 ms), time commands out, and leave resubscribing to the bus', () => {
    const c = track(redisConnector(redis.url, { lazyConnect: true })() as Redis);
    const retry = c.options.retryStrategy!;
    expect([retry(1), retry(2), retry(3), retry(4), retry(20)]).toEqual([100, 200, 400, 500, 500]);
    expect(c.options).toMatchObject({ autoResubscribe: false, maxRetriesPerRequest: 1, commandTimeout: 2_000, connectTimeout: 2_000, lazyConnect: true });
  });

  it('a Cluster gets the same per-node options, its password, and a capped cluster retry', () => {
    const c = track(redisConnector({ cluster: [{ host: '127.0.0.1', port: 1 }], password: 'pw' })() as Cluster);
    const retry = c.options.clusterRetryStrategy as (n: number) => number;
    expect([retry(1), retry(3), retry(20)]).toEqual([100, 400, 500]);
    expect(c.options.redisOptions).toMatchObject({ autoResubscribe: false, commandTimeout: 2_000, password: 'pw' });
  });

  it('a { url } target without a password connects as the URL says (no password invented)', async () => {
    // No source, nothing read now or at reconnection.
    expect(redisTargetFrom({ url: redis.url }, () => 'never asked', () => () => 'never asked')).toEqual({ url: redis.url, password: undefined });
    const c = track(redisConnector({ url: redis.url })() as Redis);
    expect(await c.ping()).toBe('PONG');
  });
});

describe('bus connections: a rotated password is read again at reconnection', () => {
  let secured: BusRedis;
  let secAdmin: Redis;
  beforeAll(async () => {
    secured = await startBusRedis();
    secAdmin = new Redis(secured.url, { maxRetriesPerRequest: 1 });
    secAdmin.on('error', () => undefined);
    await secAdmin.config('SET', 'requirepass', 'p1');
  });
  afterAll(async () => {
    secAdmin?.disconnect();
    await secured?.stop();
  });

  it('a { url } target whose URL carries the password, and no password of its own, keeps the URL\'s', async () => {
    const url = secured.url.replace('redis://', 'redis://:p1@');
    const c = track(redisConnector({ url })() as Redis);
    expect(await c.ping()).toBe('PONG');
  });

  it('reconnects with the password the source holds now; an empty read keeps the one in use', async () => {
    let source = 'p1';
    const c = track(redisConnector({ url: secured.url, password: 'p1', readPassword: () => source })() as Redis);
    expect(await c.ping()).toBe('PONG');
    // Rotation: the server takes p2 only, the source holds p2, connections are cut.
    source = 'p2';
    await secAdmin.config('SET', 'requirepass', 'p2');
    await secAdmin.auth('p2');
    await secAdmin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await waitFor(() => c.status !== 'ready', 1_000, 'dropped');
    await waitFor(() => c.status === 'ready', 1_500, 'reconnected with p2');
    expect(await c.ping()).toBe('PONG');
    // A source read mid-swap (empty): the password in use (p2) stays.
    source = '';
    await secAdmin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await waitFor(() => c.status !== 'ready', 1_000, 'dropped');
    await waitFor(() => c.status === 'ready', 1_500, 'reconnected, still p2');
    expect(await c.ping()).toBe('PONG');
  });
});

describe('stream epoch and publisher resets', () => {
  it('counts a reset and reads the stored epoch back', async () => {
    const client = track(new Redis(redis.url, { maxRetriesPerRequest: 1 }));
    const prefix = 'pubreset:';
    const publisher = new RedisRevocationPublisher(client, 60_000, { prefix });
    expect(await publisher.checkEpoch()).toBe(false);
    const first = await publisher.readEpoch();
    expect(first).toBe(publisher.settledEpoch);
    expect(first).toMatch(/^\d+-[0-9a-f]{16}$/);
    await admin.del(epochKeyOf(revocationsKey(prefix)));
    expect(await publisher.checkEpoch()).toBe(true);
    expect(publisher.resets).toBe(1);
    expect(await publisher.readEpoch()).not.toBe(first);
  });

  it('a user that may not write reads the epoch instead of failing', async () => {
    await admin.acl('SETUSER', 'reader', 'on', '>rpw', '~*', '+@all', '-set');
    const client = track(new Redis(redis.url, { username: 'reader', password: 'rpw', maxRetriesPerRequest: 1 }));
    await admin.set('ro:epoch', 'e1');
    expect(await currentEpoch(client, 'ro:epoch', true, 1)).toBe('e1');
    expect(await currentEpoch(client, 'ro:none', true, 1)).toBeNull();
  });

  it('any other failure to write the epoch is the caller\'s to report', async () => {
    // Last in the file: the Redis refuses writes (OOM) until restored.
    const client = track(new Redis(redis.url, { maxRetriesPerRequest: 1 }));
    await client.ping();
    await admin.config('SET', 'maxmemory', '1');
    try {
      await expect(currentEpoch(client, 'oom:epoch', true, 1)).rejects.toThrow(/OOM/);
    } finally {
      await admin.config('SET', 'maxmemory', '0');
    }
    await sleep(0);
  });
});
