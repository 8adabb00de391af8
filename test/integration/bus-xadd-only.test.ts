import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { plainClient, publisherFor, recorder, rev, sleep } from '../helpers/bus-harness.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A revocation whose PUBLISH never happened (the publisher died between XADD and PUBLISH,
 * or its PUBLISH failed) is in the stream only, and the periodic re-read promises to
 * deliver it. The re-read started at the newest id seen less the overlap, and pub/sub ids
 * moved that position too: a later revocation published more than the overlap after the
 * lost one carried it past, and the lost one was never read (no gap reported, the channel
 * "up"), on sidecars and verifiers alike. The re-read now starts from what the stream
 * itself was read up to.
 */
const KEY = 'leash:revocations';
let redis: BusRedis;
beforeAll(async () => {
  redis = await startBusRedis();
});
afterAll(async () => {
  await redis.stop();
});

async function lostThenPublished(publishLater: boolean): Promise<{ lostId: string; received: string[] }> {
  // A short overlap and poll, so the later revocation lands beyond the overlap quickly.
  // The first re-read runs at the first heartbeat (500 ms): the lost entry is written after
  // it, the later revocation before the next one (2 s on).
  const rec = recorder(redis.url, { pollMs: 2_000, overlapMs: 200 });
  await rec.sub.start();
  await sleep(800);
  const admin = plainClient(redis.url);
  const { publisher, client } = publisherFor(redis.url);
  try {
    // XADD exactly as the publisher writes it; the PUBLISH never happens.
    const lostId = (await admin.xadd(KEY, '*', 'scope', 'lease', 'target', `lost-${publishLater}`, 'reason', 'publisher died', 'at', new Date().toISOString(), 'by', 'admin')) as string;
    if (publishLater) {
      await sleep(400);
      const later = (await publisher.publish(rev(2))).id;
      await waitFor(() => rec.ids.has(later), { timeoutMs: 2_000, intervalMs: 10 });
    }
    await waitFor(() => rec.ids.has(lostId), { timeoutMs: 5_000, intervalMs: 20 }).catch(() => undefined);
    return { lostId, received: rec.received.map((r) => r.id) };
  } finally {
    await rec.sub.close();
    admin.disconnect();
    client.disconnect();
  }
}

describe('a revocation in the stream whose PUBLISH never happened', () => {
  it('is delivered by the re-read', async () => {
    const { lostId, received } = await lostThenPublished(false);
    expect(received).toContain(lostId);
  });

  it('is delivered even when a later revocation, published beyond the overlap, arrived by pub/sub first', async () => {
    const { lostId, received } = await lostThenPublished(true);
    expect(received).toContain(lostId);
  });
});
