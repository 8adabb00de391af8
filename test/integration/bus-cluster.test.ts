import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { hashJoinToken } from '../../src/authority/leases/join-tokens.js';
import { RedisStore } from '../../src/authority/leases/redis.js';
import { redisConnector } from '../../src/bus/connect.js';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { missing, recorder, rev, sleep, waitFor, type Recorder } from '../helpers/bus-harness.js';
import { redisCliMissing, startCluster, type TestCluster } from '../helpers/bus-cluster.js';

/**
 * The revocation bus and the authority's RedisStore against a real Redis Cluster: three
 * masters (redis-server --cluster-enabled yes), joined by `redis-cli --cluster create`.
 * Skipped only when redis-cli is missing (redis-server ships with it).
 */
const cliMissing = redisCliMissing();
if (cliMissing) console.warn(`[bus-cluster] SKIPPED: ${cliMissing}; install redis-tools (redis-cli) to run the Redis Cluster tests`);

let cluster: TestCluster | undefined;
const recorders: Recorder[] = [];
const clusters: Cluster[] = [];

/** A Cluster client of our own (closed in afterAll); `bus` = built by the bus' connector. */
function clusterClient(bus: boolean): Cluster {
  const seed = [{ host: '127.0.0.1', port: cluster!.nodes[0]!.port }];
  const c = bus ? (redisConnector({ cluster: seed })() as Cluster) : new Cluster(seed);
  c.on('error', () => undefined);
  clusters.push(c);
  return c;
}

/**
 * A subscriber connected through redisConnector({ cluster: [first node] }). No periodic
 * re-read (pollMs 0): what arrives after the kill must come from the reconnect catch-up,
 * not from a poll that happens to run at the right time.
 */
function clusterRecorder(): Recorder {
  const rec = recorder('redis://unused', { connect: redisConnector({ cluster: [{ host: '127.0.0.1', port: cluster!.nodes[0]!.port }] }), pollMs: 0 });
  recorders.push(rec);
  return rec;
}

/** Every recorder got exactly `ids`, each once. */
function expectExactlyOnce(recs: Recorder[], ids: string[]): void {
  for (const rec of recs) {
    expect(missing(rec, ids)).toEqual([]);
    const counts = new Map<string, number>();
    for (const r of rec.received) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    expect([...counts.entries()].filter(([, c]) => c !== 1)).toEqual([]);
    expect(rec.received.filter((r) => ids.includes(r.id)).length).toBe(ids.length);
  }
}

describe.skipIf(cliMissing !== undefined)('revocation bus and RedisStore on a real Redis Cluster (3 masters)', () => {
  let subs: Recorder[] = [];
  let seen = 0; // ids published before the current test, received by everyone

  beforeAll(async () => {
    const t0 = Date.now();
    cluster = await startCluster(3);
    console.info(`[bus-cluster] cluster up in ${Date.now() - t0} ms on ports ${cluster.nodes.map((n) => n.port).join(', ')}`);
  });
  afterAll(async () => {
    await Promise.allSettled(recorders.splice(0).map((r) => r.sub.close()));
    clusters.splice(0).forEach((c) => c.disconnect());
    await cluster?.stop();
  });

  it('3 subscribers via redisConnector({ cluster }) get each of 50 revocations exactly once, from two Cluster publishers', async () => {
    subs = [clusterRecorder(), clusterRecorder(), clusterRecorder()];
    await Promise.all(subs.map((s) => s.sub.start()));
    expect(subs.map((s) => s.up)).toEqual([true, true, true]);

    const viaConnector = new RedisRevocationPublisher(clusterClient(true), 3_600_000);
    const viaCluster = new RedisRevocationPublisher(clusterClient(false), 3_600_000);
    const published: string[] = [];
    for (let i = 0; i < 50; i++) published.push((await (i % 2 ? viaCluster : viaConnector).publish(rev(i))).id);
    await waitFor(() => subs.every((s) => missing(s, published).length === 0), 5_000, 'all 50 on every subscriber');
    await sleep(200); // room for a duplicate to show up
    expectExactlyOnce(subs, published);
    // No order check: a Cluster client sends each PUBLISH to any master, which forwards it
    // over the cluster bus, so the fast path may reorder; ids deduplicate, the stream orders.
    expect(subs.every((s) => s.malformed.length === 0 && s.gaps === 0)).toBe(true);
    expect(await clusters[0]!.xlen('leash:revocations')).toBe(50);
    seen = published.length;
  });

  it('CLIENT KILL TYPE pubsub on every node mid-stream: nothing lost, nothing doubled after catch-up', async () => {
    expect(subs.length).toBe(3);
    const publisher = new RedisRevocationPublisher(clusterClient(true), 3_600_000);
    const published: string[] = [];
    let killed = 0;
    const downs = subs.map((s) => s.channel.filter((u) => !u).length);
    const t0 = Date.now();
    for (let i = 0; i < 60; i++) {
      published.push((await publisher.publish(rev(100 + i))).id);
      if (i === 20) {
        const counts = await Promise.all(cluster!.nodes.map((n) => cluster!.node(n.port).client('KILL', 'TYPE', 'PUBSUB') as Promise<number>));
        killed = counts.reduce((a, b) => a + b, 0);
      }
      // Right after the kill, publish back to back: these land while ioredis is still
      // re-subscribing on a new connection, so pub/sub loses them and only the catch-up can tell.
      if (i < 20 || i > 30) await sleep(5);
    }
    expect(killed).toBeGreaterThanOrEqual(3); // one subscribed connection per subscriber
    await waitFor(() => subs.every((s) => missing(s, published).length === 0), 8_000, 'every revocation after the kill').catch(() => undefined);
    console.info(`[bus-cluster] pubsub kill: ${killed} connections killed; all caught up ${Date.now() - t0} ms after the first publish`);
    await sleep(200);
    expectExactlyOnce(subs, published);
    await waitFor(() => subs.every((s) => s.up), 3_000, 'channels up again');
    // Every subscriber noticed its subscribed connection go (and came back up).
    expect(subs.map((s, k) => s.channel.filter((u) => !u).length > downs[k]!)).toEqual([true, true, true]);
    for (const s of subs) expect(s.received.length).toBe(seen + published.length);
    // And the bus still works after the kill.
    const after = (await publisher.publish(rev(999))).id;
    await waitFor(() => subs.every((s) => s.ids.has(after)), 3_000, 'delivery after the kill');
  });

  it('RedisStore on a Cluster client: put/get/list/delete, join token taken once, identities', async () => {
    const client = clusterClient(false);
    const store = new RedisStore(client, { prefix: 'leash:' });
    const now = Date.now();
    const lease = (i: number, over: Partial<LeaseRecord> = {}): LeaseRecord => ({
      id: `lse_cluster_${i}`,
      instance: `spiffe://leash.local/join/agent-${i % 3}`,
      credential: i % 2 ? 'openai' : 'anthropic',
      fingerprint: fingerprint(`v${i}`),
      version: 'v1',
      issuedAtMs: now,
      expiresAtMs: now + 60_000 + i,
      ...over,
    });
    const records = Array.from({ length: 12 }, (_, i) => lease(i));
    for (const r of records) await store.putLease(r);
    expect(await store.getLease(records[4]!.id)).toEqual(records[4]);
    expect((await store.listLeases()).map((r) => r.id)).toEqual(records.map((r) => r.id));
    expect((await store.listLeases({ instance: 'spiffe://leash.local/join/agent-1' })).map((r) => r.id)).toEqual(records.filter((_, i) => i % 3 === 1).map((r) => r.id));
    expect((await store.listLeases({ credential: 'openai' })).map((r) => r.id)).toEqual(records.filter((_, i) => i % 2 === 1).map((r) => r.id));
    expect(await store.deleteLease(records[4]!.id)).toBe(true);
    expect(await store.deleteLease(records[4]!.id)).toBe(false);
    expect(await store.getLease(records[4]!.id)).toBeUndefined();
    expect((await store.listLeases()).map((r) => r.id)).not.toContain(records[4]!.id);

    // The keys really are spread over the masters (no hash tags): more than one node holds some.
    const sizes = await Promise.all(cluster!.nodes.map((n) => cluster!.node(n.port).dbsize()));
    expect(sizes.filter((s) => s > 0).length).toBeGreaterThan(1);

    const hashes = ['tok-a', 'tok-b', 'tok-c'].map((t) => hashJoinToken(t));
    for (const h of hashes) await store.putJoinToken(h, { identity: `spiffe://leash.local/join/${h.slice(0, 6)}`, expiresAtMs: now + 60_000 });
    const takes = await Promise.all(hashes.flatMap((h) => [store.takeJoinToken(h, Date.now()), store.takeJoinToken(h, Date.now())]));
    expect(takes.filter((t) => t !== undefined).length).toBe(3); // each taken exactly once
    expect(await store.takeJoinToken(hashes[0]!, Date.now())).toBeUndefined();

    await store.putIdentity('spiffe://leash.local/join/agent-1', now + 60_000);
    expect(await store.hasIdentity('spiffe://leash.local/join/agent-1')).toBe(true);
    expect(await store.isIdentityRevoked('spiffe://leash.local/join/agent-1')).toBe(false);
    await store.revokeIdentity('spiffe://leash.local/join/agent-1', now + 60_000);
    expect(await store.isIdentityRevoked('spiffe://leash.local/join/agent-1')).toBe(true);
    await store.close();
  });
});
