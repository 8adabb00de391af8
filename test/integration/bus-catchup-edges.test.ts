import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisConnector } from '../../src/bus/connect.js';
import { RedisRevocationSubscriber, type RedisSubscriberOptions } from '../../src/bus/redis.js';
import type { GapReason } from '../../src/bus/types.js';
import { epochKeyOf, revocationsKey, storeKeys, type Revocation } from '../../src/core/protocol.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { startBusProxy } from '../helpers/bus-proxy.js';
import { plainClient, sleep, waitFor } from '../helpers/bus-harness.js';
import type { Redis } from 'ioredis';

/**
 * Edges of the subscriber's catch-up that the broader bus tests do not pin: what counts as
 * "revocations may be lost" (gap 'trimmed') when the stream is empty or gone, the order of
 * messages held during a catch-up, dedupe with a bounded memory, the poll's pace, the
 * exposure check and close(). Each test uses a prefix of its own (its own stream).
 */
let redis: BusRedis;
let admin: Redis;
const closers: (() => Promise<unknown> | void)[] = [];
let n = 0;

beforeAll(async () => {
  redis = await startBusRedis();
  admin = plainClient(redis.url);
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  admin.disconnect();
  await redis.stop();
});

interface Sub {
  sub: RedisRevocationSubscriber;
  key: string;
  prefix: string;
  received: Revocation[];
  gaps: GapReason[];
  channel: boolean[];
  exposed: number;
  up: boolean;
}

function subscriber(options: Partial<RedisSubscriberOptions> = {}, onGap?: (why: GapReason) => Promise<void> | void, url?: string): Sub {
  const prefix = `edge${++n}:`;
  const s = { key: revocationsKey(prefix), prefix, received: [], gaps: [], channel: [], exposed: 0, up: false } as unknown as Sub;
  s.sub = new RedisRevocationSubscriber(
    { connect: redisConnector(url ?? redis.url), heartbeatMs: 100, heartbeatDeadlineMs: 1_000, pollMs: 0, prefix, ...options },
    {
      revocation: (r) => s.received.push(r),
      channel: (up) => {
        s.up = up;
        s.channel.push(up);
      },
      gap: async (why) => {
        s.gaps.push(why);
        await onGap?.(why);
      },
      malformed: () => undefined,
      exposed: () => s.exposed++,
    },
  );
  closers.push(() => s.sub.close());
  return s;
}

const message = (id: string, target: string) => JSON.stringify({ id, scope: 'lease', target, reason: 'r', at: new Date().toISOString(), by: 'test' });
const entry = (key: string, target: string) => admin.xadd(key, '*', 'scope', 'lease', 'target', target, 'reason', 'r', 'at', new Date().toISOString(), 'by', 'test') as Promise<string>;

/** Drop the subscriber connections: the reconnection runs a full subscribe + catch-up. */
async function forceCatchUp(s: Sub): Promise<void> {
  const ups = s.channel.filter((u) => u).length;
  await admin.client('KILL', 'TYPE', 'PUBSUB');
  await waitFor(() => s.up && s.channel.filter((u) => u).length > ups, 1_500, 'caught up again');
}

describe('bus catch-up: gaps on empty or missing streams', () => {
  it('a stream deleted after we read from it is a gap (its revocations may be gone)', async () => {
    const s = subscriber();
    await entry(s.key, 'before'); // the tip we start at
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    await admin.del(s.key); // the epoch stays: no reset, only the stream is gone
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['trimmed']);
  });

  it('an empty stream that generated ids past our position is a gap', async () => {
    const s = subscriber();
    await entry(s.key, 'before');
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    // b was added (never published) and everything trimmed: b is lost to us.
    await admin.multi().xadd(s.key, '*', 'scope', 'lease', 'target', 'b', 'at', new Date().toISOString()).xtrim(s.key, 'MAXLEN', 0).exec();
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['trimmed']);
  });

  it('an entry newer than our position deleted (XDEL) before we read it is a gap', async () => {
    const s = subscriber();
    await entry(s.key, 'before');
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    const b = await entry(s.key, 'b'); // never published, then deleted
    await admin.xdel(s.key, b);
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['trimmed']);
  });

  it('an empty stream whose newest id is our position is no gap', async () => {
    const s = subscriber();
    await entry(s.key, 'before');
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    await admin.xtrim(s.key, 'MAXLEN', 0); // only what we have seen is gone
    await forceCatchUp(s);
    expect(s.gaps).toEqual([]);
  });

  it('at position 0-0: entries added and trimmed before we read them are a gap', async () => {
    const s = subscriber();
    await s.sub.start(); // nothing published yet: position 0-0
    await admin.multi().xadd(s.key, '*', 'scope', 'lease', 'target', 'x', 'at', new Date().toISOString()).xadd(s.key, '*', 'scope', 'lease', 'target', 'y', 'at', new Date().toISOString()).xtrim(s.key, 'MAXLEN', 1).exec();
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['trimmed']);
    expect(s.received.map((r) => r.target)).toEqual(['y']);
  });

  it('at position 0-0: entries all still there are no gap, and are delivered', async () => {
    const s = subscriber();
    await s.sub.start();
    await entry(s.key, 'x');
    await forceCatchUp(s);
    expect(s.gaps).toEqual([]);
    expect(s.received.map((r) => r.target)).toEqual(['x']);
  });
});

describe('bus catch-up: held messages, dedupe, poll, exposure, close', () => {
  it('pub/sub messages that arrive during a catch-up are applied after it, in id order', async () => {
    let s: Sub;
    const base = Date.now() + 1_000;
    let once = true;
    s = subscriber({}, async () => {
      if (!once) return;
      once = false;
      // Published in reverse order while the catch-up waits for the owner (a reset).
      await admin.publish(s.key, message(`${base}-2`, 'second'));
      await admin.publish(s.key, message(`${base}-1`, 'first'));
      await sleep(100);
      expect(s.received).toEqual([]); // held, not applied yet
    });
    await s.sub.start();
    await admin.del(epochKeyOf(s.key)); // the next catch-up sees a reset and calls gap
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['reset']);
    expect(s.received.map((r) => r.target)).toEqual(['first', 'second']);
  });

  it('pub/sub ids held by a failed catch-up never count as read: forged far-future ids cannot hide a later revocation', async () => {
    let s: Sub;
    let calls = 0;
    s = subscriber({ remember: 2 }, async () => {
      if (++calls > 1) return;
      // While the catch-up waits for the owner: forged ids far ahead of the stream...
      const far = Date.now() + 1e9;
      for (let i = 0; i < 3; i++) await admin.publish(s.key, message(`${far}-${i}`, `forged${i}`));
      await sleep(50);
      // ...and the owner fails: the catch-up fails, the held messages are applied.
      throw new Error('reconcile failed');
    });
    await entry(s.key, 'before');
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    // b is added (not published) and a trimmed: the next catch-up reports a gap.
    await entry(s.key, 'b');
    await admin.xtrim(s.key, 'MAXLEN', 1);
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    // The retry (heartbeat) catches up again: b must arrive.
    await waitFor(() => s.received.some((r) => r.target === 'b'), 1_500, 'b delivered after the failed catch-up');
    expect(calls).toBeGreaterThanOrEqual(2);
  });

  it('a connection that drops during a catch-up and is back before it ends gets a catch-up of its own; the reset is reported once', async () => {
    let s: Sub;
    let calls = 0;
    // No heartbeat to fall back on: only the sync loop may notice the new connection.
    s = subscriber({ heartbeatMs: 60_000 }, async () => {
      if (++calls > 1) return;
      await admin.client('KILL', 'TYPE', 'PUBSUB');
      await waitFor(() => !s.up, 1_000, 'down');
      await sleep(300); // reconnected (retry after 100 ms) and 'ready' while we still reconcile
    });
    await s.sub.start();
    await admin.del(epochKeyOf(s.key));
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => !s.up, 1_000, 'down');
    await waitFor(() => s.up, 1_500, 'up again without a heartbeat');
    expect(s.gaps).toEqual(['reset']);
    const id = `${Date.now() + 1_000}-0`;
    await admin.publish(s.key, message(id, 'after'));
    await waitFor(() => s.received.some((r) => r.target === 'after'), 1_000, 'subscribed on the new connection');
  });

  it('the channel is reported up only once the connection that carries the subscription is back', async () => {
    let s: Sub;
    let calls = 0;
    let probes = 0;
    s = subscriber({ heartbeatMs: 60_000 }, async () => {
      if (++calls > 1) return;
      // The subscribed connection drops while we reconcile; it reconnects ~100 ms later,
      // after this catch-up has ended.
      await admin.client('KILL', 'TYPE', 'PUBSUB');
      await waitFor(() => !s.up, 1_000, 'down');
    });
    await s.sub.start();
    await admin.del(epochKeyOf(s.key));
    const before = s.channel.length;
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => s.channel.length > before && !s.up, 1_000, 'down');
    // Every time the channel is reported up from now on, a pub/sub-only revocation is sent:
    // "up" means subscribed, so each must arrive.
    const seenUps = s.channel.filter((u) => u).length;
    const probe = setInterval(() => {
      const ups = s.channel.filter((u) => u).length;
      if (ups > seenUps + probes) {
        probes++;
        void admin.publish(s.key, message(`${Date.now() + 1_000}-${probes}`, `probe${probes}`));
      }
    }, 1);
    try {
      await waitFor(() => s.up && probes > 0, 1_500, 'up again');
      await sleep(300);
    } finally {
      clearInterval(probe);
    }
    for (let i = 1; i <= probes; i++) expect(s.received.map((r) => r.target)).toContain(`probe${i}`);
  });

  it('after a reset to an empty stream, the next catch-up sees no further gap', async () => {
    const s = subscriber();
    await entry(s.key, 'before');
    await s.sub.start();
    await admin.del(s.key, epochKeyOf(s.key)); // as a Redis restarted without persistence
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['reset']);
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['reset']);
  });

  it('messages taken while the channel is down do not move our position past entries trimmed unread', async () => {
    let s: Sub;
    let calls = 0;
    s = subscriber({ heartbeatMs: 60_000 }, () => {
      if (++calls === 1) throw new Error('reconcile failed'); // the catch-up fails: channel stays down
    });
    await entry(s.key, 'before');
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    await entry(s.key, 'x');
    await admin.xtrim(s.key, 'MAXLEN', 1); // a trimmed past us: the next catch-up reports a gap, and fails
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => calls === 1 && !s.up, 1_000, 'catch-up failed');
    await sleep(50);
    // Still subscribed, channel down: b is added and trimmed unread, c published.
    await entry(s.key, 'b');
    const c = await entry(s.key, 'c');
    await admin.xtrim(s.key, 'MAXLEN', 1);
    await admin.publish(s.key, message(c, 'c'));
    await waitFor(() => s.received.some((r) => r.target === 'c'), 1_000, 'c delivered (down)');
    await forceCatchUp(s);
    // b is gone unread: the owner must hear of a gap again (its first one failed).
    expect(calls).toBe(2);
    expect(s.gaps).toEqual(['trimmed', 'trimmed']);
  });

  it('messages held by a catch-up that fails do not move our position past entries trimmed unread', async () => {
    let s: Sub;
    let calls = 0;
    s = subscriber({ heartbeatMs: 60_000 }, async () => {
      if (++calls > 1) return;
      // While the owner reconciles: b added and trimmed unread, c published (held); then it fails.
      await entry(s.key, 'b');
      const c = await entry(s.key, 'c');
      await admin.xtrim(s.key, 'MAXLEN', 1);
      await admin.publish(s.key, message(c, 'c'));
      await sleep(50);
      throw new Error('reconcile failed');
    });
    await entry(s.key, 'before');
    await s.sub.start();
    const a = await entry(s.key, 'a');
    await admin.publish(s.key, message(a, 'a'));
    await waitFor(() => s.received.length === 1, 1_000, 'a delivered');
    await entry(s.key, 'x');
    await admin.xtrim(s.key, 'MAXLEN', 1);
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => s.received.some((r) => r.target === 'c'), 1_000, 'held c applied after the failure');
    await forceCatchUp(s);
    expect(s.gaps).toEqual(['trimmed', 'trimmed']);
  });

  it('a failed catch-up or poll replaces the command connection (it may be half-open)', async () => {
    const proxy = await startBusProxy(redis.port);
    closers.push(() => proxy.close());
    let calls = 0;
    const s = subscriber({ heartbeatMs: 50, pollMs: 50 }, () => {
      calls++;
      throw new Error('reconcile failed');
    }, proxy.url);
    await s.sub.start();
    expect(proxy.accepted).toBe(2); // sub + cmd
    // A poll's catch-up fails (reset seen, owner fails): only the command connection is replaced.
    await admin.del(epochKeyOf(s.key));
    await waitFor(() => calls >= 1, 1_000, 'poll failed');
    await waitFor(() => proxy.accepted >= 3, 1_000, 'cmd reconnected after the failed poll');
  });

  it('a failed catch-up after a reconnection replaces the command connection too', async () => {
    const proxy = await startBusProxy(redis.port);
    closers.push(() => proxy.close());
    let calls = 0;
    const s = subscriber({ heartbeatMs: 60_000 }, () => {
      calls++;
      throw new Error('reconcile failed');
    }, proxy.url);
    await s.sub.start();
    expect(proxy.accepted).toBe(2);
    await admin.del(epochKeyOf(s.key));
    await admin.client('KILL', 'TYPE', 'PUBSUB'); // sub reconnects (+1); its catch-up fails
    await waitFor(() => calls >= 1, 1_000, 'catch-up failed');
    await waitFor(() => proxy.accepted >= 4, 1_000, 'cmd reconnected after the failed catch-up');
  });

  it('half-open connections (both) are replaced by the heartbeat, well before the command timeout', async () => {
    const proxy = await startBusProxy(redis.port);
    closers.push(() => proxy.close());
    const s = subscriber({ heartbeatMs: 50, heartbeatDeadlineMs: 150 }, undefined, proxy.url);
    await s.sub.start();
    // Every connection open now goes silent for good; new ones work.
    proxy.partition();
    proxy.heal({ old: false });
    await waitFor(() => !s.up, 1_000, 'heartbeat missed');
    await entry(s.key, 'while-down');
    const t0 = Date.now();
    await waitFor(() => s.up && s.received.some((r) => r.target === 'while-down'), 1_500, 'caught up on new connections');
    // The command connection's 2 s timeout would be the only other way out.
    expect(Date.now() - t0).toBeLessThan(1_500);
  });

  it('with a bounded dedupe memory, overlapping re-reads deliver nothing twice', async () => {
    const s = subscriber({ remember: 2, pollMs: 50 });
    await s.sub.start();
    for (let i = 0; i < 5; i++) await entry(s.key, `e${i}`); // stream only: the polls find them
    await waitFor(() => s.received.length >= 5, 1_500, 'all five polled');
    await sleep(400); // several more polls, each re-reading all five (5 s overlap)
    expect(s.received.map((r) => r.target)).toEqual(['e0', 'e1', 'e2', 'e3', 'e4']);
  });

  it('after a reset, a bounded dedupe memory still reads the new stream whole, once', async () => {
    const s = subscriber({ remember: 2 });
    await entry(s.key, 'before');
    await s.sub.start();
    await admin.del(epochKeyOf(s.key)); // reset: the stream is read whole, with no floor yet
    for (let i = 0; i < 4; i++) await entry(s.key, `r${i}`);
    await forceCatchUp(s);
    await forceCatchUp(s); // and again: the overlap re-read delivers nothing twice
    expect(s.gaps).toEqual(['reset']);
    expect(s.received.map((r) => r.target)).toEqual(['before', 'r0', 'r1', 'r2', 'r3']);
  });

  it('a catch-up reads past the first page (500 entries) of the stream', async () => {
    const s = subscriber();
    await entry(s.key, 'before');
    await s.sub.start();
    const p = admin.pipeline();
    for (let i = 0; i < 1_100; i++) p.xadd(s.key, '*', 'scope', 'lease', 'target', `p${i}`, 'at', new Date().toISOString());
    await p.exec(); // stream only, never published
    await forceCatchUp(s);
    expect(s.received.length).toBe(1_100);
    expect(s.received.at(-1)!.target).toBe('p1099');
  });

  it('remember: N pub/sub ids are kept: a catch-up re-reading the last N delivers none twice', async () => {
    const s = subscriber({ remember: 2 });
    await entry(s.key, 'before');
    await s.sub.start();
    for (const t of ['a', 'b']) {
      // As a publisher writes it: the same contents in the stream and on the channel.
      const at = new Date().toISOString();
      const id = (await admin.xadd(s.key, '*', 'scope', 'lease', 'target', t, 'reason', 'r', 'at', at, 'by', 'test')) as string;
      await admin.publish(s.key, JSON.stringify({ id, scope: 'lease', target: t, reason: 'r', at, by: 'test' }));
    }
    await waitFor(() => s.received.length === 2, 1_000, 'both by pub/sub');
    await forceCatchUp(s); // re-reads both from the stream (overlap)
    expect(s.received.map((r) => r.target)).toEqual(['a', 'b']);
  });

  it('the poll re-reads the stream at pollMs, heartbeat given in ms', async () => {
    const s = subscriber({ heartbeatMs: 100, pollMs: 200 });
    await s.sub.start();
    await sleep(150);
    const t0 = Date.now();
    await entry(s.key, 'unpublished');
    await waitFor(() => s.received.length === 1, 1_000, 'found by a poll');
    expect(Date.now() - t0).toBeLessThan(800);
  });

  it('the poll does not run more often than pollMs', async () => {
    const s = subscriber({ heartbeatMs: 50, pollMs: 60_000 });
    await s.sub.start();
    await sleep(200); // the first beat's poll has run
    await entry(s.key, 'unpublished');
    await sleep(400); // eight more beats
    expect(s.received).toEqual([]);
    await forceCatchUp(s); // it is there: a catch-up finds it
    expect(s.received.map((r) => r.target)).toEqual(['unpublished']);
  });

  it('reports a readable lease index once, however many polls', async () => {
    const s = subscriber({ heartbeatMs: 30, pollMs: 30 });
    await admin.sadd(storeKeys(s.prefix).all, 'lease-1');
    await s.sub.start();
    await sleep(400);
    expect(s.exposed).toBe(1);
  });

  it('does not report exposure when the lease index is absent', async () => {
    const s = subscriber({ heartbeatMs: 30, pollMs: 30 });
    await s.sub.start();
    await sleep(300);
    expect(s.exposed).toBe(0);
  });

  it('start() after the connection is already ready still resolves', async () => {
    const s = subscriber();
    await sleep(300); // its connection got ready (and synced) before start
    await Promise.race([s.sub.start(), sleep(1_000).then(() => Promise.reject(new Error('start() hung')))]);
    expect(s.up).toBe(true);
  });

  it('close() takes the channel down and drops both connections', async () => {
    const name = (await admin.client('LIST')) as string;
    const before = name.split('\n').filter(Boolean).length;
    const s = subscriber();
    await s.sub.start();
    expect(s.up).toBe(true);
    await s.sub.close();
    expect(s.channel.at(-1)).toBe(false);
    let count = 0;
    for (let i = 0; i < 20; i++) {
      count = ((await admin.client('LIST')) as string).split('\n').filter(Boolean).length;
      if (count <= before) break;
      await sleep(25);
    }
    expect(count).toBe(before);
  });
});
