import { describe, expect, it } from 'vitest';
import { missing, publisherFor, recorder, redisBehindProxy, rev, sleep, waitFor } from '../helpers/bus-harness.js';

/**
 * docs/pitfalls.md: a half-open socket goes unnoticed by ioredis for 10–15 minutes (#240, #1451).
 * The subscriber pings on its own connection with a deadline. Here the link to Redis is
 * partitioned (the proxy stops forwarding both ways, nothing is closed), with the
 * subscriber's default heartbeat (2 s, deadline 3 s).
 */
// One Redis and link per case: the three run at once (each mostly waits on heartbeats).
const buses = { heal: redisBehindProxy(), cut: redisBehindProxy(), new: redisBehindProxy() };

describe('revocation bus: half-open (partitioned) link', () => {
  it.concurrent.each([
    ['the link heals (old connections forward again)', 'heal'],
    ['the old connections are cut and a new one works', 'cut'],
    ['only a new connection works and the old ones stay silent forever', 'new'],
  ] as const)('reports channel down within 10 s, then reconnects and catches up when %s', async (_what, how) => {
    const bus = buses[how];
    const rec = recorder(bus.proxy.url, { heartbeatMs: undefined, heartbeatDeadlineMs: undefined }); // library defaults
    await rec.sub.start();
    expect(rec.up).toBe(true);
    const { publisher, client } = publisherFor(bus.redis.url); // directly to Redis
    const before = await publisher.publish(rev(0));
    await waitFor(() => rec.ids.has(before.id), 2_000, 'the first revocation');

    bus.proxy.partition();
    const partitionedAt = Date.now();
    const published: string[] = [];
    let publishing = true;
    const loop = (async () => {
      for (let i = 1; publishing; i++) {
        published.push((await publisher.publish(rev(i))).id);
        await sleep(50);
      }
    })();
    await waitFor(() => !rec.up, 10_000, 'channel(false) after the partition');
    const detectedMs = Date.now() - partitionedAt;
    // still partitioned for a while: nothing gets through, the channel stays down
    await sleep(1_500);
    expect(rec.up).toBe(false);
    expect(rec.received.length).toBe(1);

    if (how === 'cut') bus.proxy.cutAll(); // the old connections are reset
    bus.proxy.heal({ old: how === 'heal' });
    const healedAt = Date.now();
    await waitFor(() => rec.up, 8_000, 'channel(true) after healing');
    const backMs = Date.now() - healedAt;
    publishing = false;
    await loop;
    await waitFor(() => missing(rec, published).length === 0, 3_000, 'every revocation published meanwhile').catch(() => undefined);
    console.log(`${how}: down detected ${detectedMs} ms after the partition; up ${backMs} ms after healing; ${published.length} published meanwhile, missing ${missing(rec, published).length}`);
    expect(detectedMs).toBeLessThan(10_000);
    expect(missing(rec, published)).toEqual([]);
    expect(rec.received.length).toBe(published.length + 1);
    expect(rec.channel.slice(0, 3)).toEqual([true, false, true]);
    client.disconnect();
    await rec.sub.close();
  }, 25_000);
});
