import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { epochKeyOf } from '../../src/core/protocol.js';
import { redisConnector } from '../../src/bus/connect.js';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { recorder, rev, waitFor, type Recorder } from '../helpers/bus-harness.js';
import { redisCliMissing, startCluster, type TestCluster } from '../helpers/bus-cluster.js';

/**
 * Issue 7 on a real Redis Cluster (3 masters): the epoch key lives in the stream's hash
 * slot, so the master that loses the stream loses the epoch with it, and a subscriber at
 * position 0-0 reports the reset. The data is lost by FLUSHALL on the owning master (a
 * restart without persistence as far as the keys go; the connections stay, so it is the
 * periodic re-read that notices).
 */
const cliMissing = redisCliMissing();
const KEY = 'leash:revocations';
let cluster: TestCluster | undefined;
const recs: Recorder[] = [];

beforeAll(async () => {
  if (!cliMissing) cluster = await startCluster(3);
});
afterAll(async () => {
  await Promise.allSettled(recs.map((r) => r.sub.close()));
  await cluster?.stop();
});

describe.skipIf(cliMissing !== undefined)('revocation bus on a Cluster: reset of the stream master', () => {
  it('the epoch key is in the stream slot, for plain and hash-tagged prefixes', async () => {
    const node = cluster!.node(cluster!.nodes[0]!.port);
    for (const key of [KEY, '{leash}:revocations', 'a{b}c:revocations']) {
      expect(await node.cluster('KEYSLOT', epochKeyOf(key)), key).toBe(await node.cluster('KEYSLOT', key));
    }
  });

  it('a subscriber at 0-0 reports the reset when the master owning the stream slot loses its data', async () => {
    const seed = [{ host: '127.0.0.1', port: cluster!.nodes[0]!.port }];
    const rec = recorder('redis://unused', { connect: redisConnector({ cluster: seed }), pollMs: 200 });
    recs.push(rec);
    await rec.sub.start();
    const slot = (await cluster!.node(cluster!.nodes[0]!.port).cluster('KEYSLOT', KEY)) as number;
    const counts = await Promise.all(cluster!.nodes.map((n) => cluster!.node(n.port).cluster('COUNTKEYSINSLOT', slot) as Promise<number>));
    const owner = cluster!.nodes[counts.findIndex((c) => c > 0)]!;
    expect(counts.filter((c) => c > 0)).toEqual([1]); // the epoch, nothing published yet
    await cluster!.node(owner.port).flushall();
    await waitFor(() => rec.gaps === 1, 5_000, 'reset reported');
    // The bus works on: what is published now arrives.
    const client = redisConnector({ cluster: seed })();
    client.on('error', () => undefined);
    const r = await new RedisRevocationPublisher(client, 3_600_000).publish(rev(1));
    await waitFor(() => rec.ids.has(r.id), 3_000, 'delivery after the reset');
    expect(rec.gaps).toBe(1);
    client.disconnect();
  });
});
