import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisConnector } from '../../src/bus/connect.js';
import { RedisRevocationSubscriber } from '../../src/bus/redis.js';
import type { Revocation } from '../../src/core/protocol.js';
import { startBusRedis, startSentinel, type BusRedis, type TestSentinel } from '../helpers/bus-redis.js';
import { missing, plainClient, publisherFor, rev, waitFor } from '../helpers/bus-harness.js';

/** The subscriber through Sentinel (redis-server --sentinel, one sentinel, quorum 1). */
let redis: BusRedis;
let sentinel: TestSentinel;

beforeAll(async () => {
  redis = await startBusRedis();
  sentinel = await startSentinel(redis.port);
});
afterAll(async () => {
  await sentinel.stop();
  await redis.stop();
});

describe('revocation bus: through Sentinel', () => {
  it('subscribes via redisConnector({sentinels, name}), receives, and catches up after a reconnect', async () => {
    const got: Revocation[] = [];
    const ids = new Set<string>();
    let up = false;
    const sub = new RedisRevocationSubscriber(
      { connect: redisConnector({ sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name }), heartbeatMs: 500, heartbeatDeadlineMs: 1_500 },
      { revocation: (r) => (got.push(r), ids.add(r.id)), channel: (u) => (up = u), gap: () => undefined, malformed: () => undefined },
    );
    await sub.start();
    expect(up).toBe(true);
    const { publisher, client } = publisherFor(redis.url);
    const published: string[] = [];
    for (let i = 0; i < 10; i++) published.push((await publisher.publish(rev(i))).id);
    await waitFor(() => published.every((id) => ids.has(id)), 3_000, 'delivery through sentinel');
    const admin = plainClient(redis.url);
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    for (let i = 10; i < 20; i++) published.push((await publisher.publish(rev(i))).id);
    await waitFor(() => up && published.every((id) => ids.has(id)), 5_000, 'catch-up through sentinel').catch(() => undefined);
    expect(missing({ ids } as never, published)).toEqual([]);
    expect(got.length).toBe(published.length);
    admin.disconnect();
    client.disconnect();
    await sub.close();
  });
});
