import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareIds } from '../../src/core/protocol.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { plainClient, publisherFor, recorder, rev, sleep, waitFor, type Recorder } from '../helpers/bus-harness.js';

const KEY = 'leash:revocations';
let redis: BusRedis;
const closers: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  redis = await startBusRedis();
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await redis.stop();
});

async function started(n: number): Promise<Recorder[]> {
  const recs = Array.from({ length: n }, () => recorder(redis.url));
  for (const r of recs) closers.push(() => r.sub.close());
  await Promise.all(recs.map((r) => r.sub.start()));
  for (const r of recs) expect(r.up).toBe(true);
  return recs;
}

describe('revocation bus: basics', () => {
  it('delivers every revocation to each of 5 subscribers exactly once, in stream order', async () => {
    const recs = await started(5);
    const { publisher, client } = publisherFor(redis.url);
    closers.push(() => client.disconnect());
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await publisher.publish(rev(i))).id);
    await waitFor(() => recs.every((r) => r.received.length >= 50), 5_000, 'all 50 on every subscriber');
    // Force a catch-up on every subscriber (the stream re-read overlaps what pub/sub
    // delivered): still once each.
    const admin = plainClient(redis.url);
    closers.push(() => admin.disconnect());
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => recs.every((r) => r.channel.filter((u) => u).length >= 2 && r.up), 5_000, 'resubscribed');
    await sleep(200);
    for (const r of recs) {
      expect(r.received.map((x) => x.id)).toEqual(ids);
      expect(r.malformed).toEqual([]);
      expect(r.received[3]).toMatchObject({ scope: 'lease', target: 'lease-3', reason: 'test 3', by: 'test' });
    }
    for (let i = 1; i < ids.length; i++) expect(compareIds(ids[i - 1]!, ids[i]!)).toBeLessThan(0);
    for (const r of recs) await r.sub.close();
  });

  it('reports malformed stream entries and pub/sub messages and skips them; duplicates by id are ignored', async () => {
    const [rec] = await started(1);
    const admin = plainClient(redis.url);
    closers.push(() => admin.disconnect());
    const { publisher, client } = publisherFor(redis.url);
    closers.push(() => client.disconnect());
    const at = new Date().toISOString();
    const good = await publisher.publish(rev(1000));
    // pub/sub garbage
    const bad = [
      'not json {',
      '42',
      'null',
      JSON.stringify({ id: '1-1', scope: 'Planet', target: 'x', at }),
      JSON.stringify({ scope: 'lease', target: 'x', at }),
      JSON.stringify({ id: 'abc', scope: 'lease', target: 'x', at }),
      JSON.stringify({ id: '1-2', scope: 'lease', target: 'x' }),
      JSON.stringify({ id: '1-3', scope: 7, target: 'x'.repeat(100_000), at }),
      JSON.stringify({ id: '1-4', scope: 'lease', target: 'x', at: 'yesterday' }),
      'x'.repeat(1_000_000),
    ];
    for (const m of bad) await admin.publish(KEY, m);
    // a duplicate of a real one, by pub/sub
    await admin.publish(KEY, JSON.stringify(good));
    // stream garbage (found by the catch-up after a reconnect). An unknown but scope-shaped
    // scope, or an unreadable target, is not garbage: compat-revocations.test.ts.
    await admin.xadd(KEY, '*', 'scope', 'Planet', 'target', 'x', 'at', at);
    await admin.xadd(KEY, '*', 'scope', 'lease', 'target', 'x');
    await admin.xadd(KEY, '*', 'scope', 'LEASE', 'target', 'y'.repeat(5000), 'at', at);
    await admin.xadd(KEY, '*', 'garbage', 'only');
    const after = await publisher.publish(rev(1001));
    await waitFor(() => rec!.ids.has(after.id), 3_000, 'the good one after the garbage');
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => rec!.channel.filter((u) => u).length >= 2 && rec!.up, 5_000, 'resubscribed and caught up');
    expect(rec!.received.map((r) => r.id)).toEqual([good.id, after.id]);
    expect(rec!.malformed.filter((m) => m.startsWith('pub/sub')).length).toBe(bad.length);
    expect(rec!.malformed.filter((m) => m.startsWith('stream entry')).length).toBe(4);
    expect(rec!.malformed.every((m) => m.length < 200)).toBe(true);
    await rec!.sub.close();
  });

  it('MINID trimming keeps only the window', async () => {
    const admin = plainClient(redis.url);
    closers.push(() => admin.disconnect());
    await admin.del(KEY);
    const now = Date.now();
    const at = new Date(now).toISOString();
    // 300 old entries spread over the last 6 s (explicit ids), then one publish with a 1 s window
    for (let i = 0; i < 300; i++) await admin.xadd(KEY, `${now - 6_000 + i * 20}-0`, 'scope', 'lease', 'target', `old-${i}`, 'at', at);
    const { publisher, client } = publisherFor(redis.url, 1_000);
    closers.push(() => client.disconnect());
    const fresh = await publisher.publish(rev(1));
    const minId = Number(fresh.id.split('-')[0]) - 1_000;
    const kept = (await admin.xrange(KEY, '-', '+')) as [string, string[]][];
    const inWindow = kept.filter(([id]) => Number(id.split('-')[0]) >= minId);
    const older = kept.filter(([id]) => Number(id.split('-')[0]) < minId);
    // Every entry of the window is kept; '~' only drops whole macro nodes (100 entries), so
    // fewer than one node of older entries may linger — never all of them.
    expect(inWindow.length).toBe(300 - Math.ceil((minId - (now - 6_000)) / 20) + 1);
    expect(older.length).toBeLessThan(100);
    expect(kept.at(-1)![0]).toBe(fresh.id);
    // An exact trim to the same bound leaves exactly the window.
    await admin.xtrim(KEY, 'MINID', `${minId}-0`);
    expect(await admin.xlen(KEY)).toBe(inWindow.length);
  });
});
