import { describe, expect, it } from 'vitest';
import { redisConnector } from '../../src/bus/connect.js';
import { RedisRevocationSubscriber } from '../../src/bus/redis.js';
import type { Revocation } from '../../src/core/protocol.js';
import { plainClient, publisherFor, redisBehindProxy, rev, sleep, waitFor } from '../helpers/bus-harness.js';

/**
 * docs/pitfalls.md: the catch-up must start only once the SUBSCRIBE is acknowledged. On loopback
 * the acknowledgement always beats the catch-up's XRANGE, so the ready-race test cannot
 * tell. Here the subscriber's own connection goes through a proxy that holds its traffic
 * right after it is ready again (its SUBSCRIBE is held), while the command connection
 * (the catch-up) is direct; revocations are published during that window. A catch-up
 * that does not wait reads the stream too early, and what is published afterwards reaches
 * a connection that is not subscribed yet: lost. No overlap re-read, no poll, so nothing
 * papers over it.
 */
const bus = redisBehindProxy();

describe('revocation bus: a slow SUBSCRIBE acknowledgement loses nothing', () => {
  it('revocations published while the re-SUBSCRIBE is held arrive once it is acknowledged', async () => {
    const direct = redisConnector(bus.redis.url);
    const viaProxy = redisConnector(bus.proxy.url);
    let connections = 0;
    let holdNextReady = false;
    let held = false;
    const received: Revocation[] = [];
    const channel: boolean[] = [];
    const sub = new RedisRevocationSubscriber(
      {
        // The first connection is the subscriber's, the second the command one.
        connect: () => {
          if (connections++ > 0) return direct();
          const c = viaProxy();
          // Registered before the subscriber's own 'ready' listener: the SUBSCRIBE it
          // sends on 'ready' is held by the proxy.
          c.on('ready', () => {
            if (!holdNextReady) return;
            holdNextReady = false;
            held = true;
            bus.proxy.partition();
          });
          return c;
        },
        heartbeatMs: 60_000,
        heartbeatDeadlineMs: 60_000,
        overlapMs: 0,
        pollMs: 0,
      },
      {
        revocation: (r) => received.push(r),
        channel: (up) => channel.push(up),
        gap: () => undefined,
        malformed: () => undefined,
      },
    );
    await sub.start();
    const { publisher, client } = publisherFor(bus.redis.url);
    const admin = plainClient(bus.redis.url);
    const published: string[] = [];
    published.push((await publisher.publish(rev(0))).id);
    await waitFor(() => received.length === 1, 2_000, 'first revocation');

    // Cut the subscriber's connection; hold its traffic as soon as it is ready again.
    holdNextReady = true;
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => held, 5_000, 'subscriber reconnected and held');
    for (let i = 1; i <= 20; i++) {
      published.push((await publisher.publish(rev(i))).id);
      await sleep(5);
    }
    bus.proxy.heal();
    await waitFor(() => channel.at(-1) === true && published.every((id) => received.some((r) => r.id === id)), 3_000, 'all delivered').catch(() => undefined);
    const got = new Set(received.map((r) => r.id));
    expect(published.filter((id) => !got.has(id))).toEqual([]);
    client.disconnect();
    admin.disconnect();
    await sub.close();
  }, 15_000);
});
