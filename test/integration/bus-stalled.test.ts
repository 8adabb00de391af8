import { describe, expect, it } from 'vitest';
import { missing, plainClient, publisherFor, recorder, redisBehindProxy, rev, waitFor } from '../helpers/bus-harness.js';

/**
 * docs/pitfalls.md: Redis cuts off a pub/sub client whose output buffer passes its limit (32 MB,
 * or 8 MB for 60 s by default); a slow subscriber must recover through catch-up. Here the
 * limit is 64 kB hard / 32 kB for 1 s, and the subscriber's reads are paused in the proxy.
 */
const KEY = 'leash:revocations';
const bus = redisBehindProxy();

describe('revocation bus: a stalled subscriber cut off by Redis', () => {
  it('recovers every revocation by catch-up once it reads again', async () => {
    const admin = plainClient(bus.redis.url);
    await admin.config('SET', 'client-output-buffer-limit', 'pubsub 64kb 32kb 1');
    // heartbeat slower than the test: it is Redis that cuts the subscriber here, not us
    const rec = recorder(bus.proxy.url, { heartbeatMs: 60_000, heartbeatDeadlineMs: 60_000 });
    await rec.sub.start();
    const { publisher, client } = publisherFor(bus.redis.url);
    const first = await publisher.publish(rev(0));
    await waitFor(() => rec.ids.has(first.id), 2_000, 'first');
    expect(((await admin.pubsub('NUMSUB', KEY)) as [string, number])[1]).toBe(1);

    bus.proxy.pauseReads();
    const big = 'r'.repeat(48 * 1024);
    const published: string[] = [first.id];
    // ~48 kB each: kernel buffers (a few MB on loopback) fill, then Redis' output buffer
    let cut = false;
    for (let i = 1; i <= 600 && !cut; i++) {
      published.push((await publisher.publish(rev(i, { reason: big, target: `t${i}-${'x'.repeat(1500)}` }))).id);
      if (i % 20 === 0) cut = ((await admin.pubsub('NUMSUB', KEY)) as [string, number])[1] === 0;
    }
    await waitFor(() => cut, 3_000, 'Redis to disconnect the stalled subscriber').catch(() => undefined);
    cut ||= ((await admin.pubsub('NUMSUB', KEY)) as [string, number])[1] === 0;
    const stats = String(await admin.info('stats'));
    const disconnections = /client_output_buffer_limit_disconnections:(\d+)/.exec(stats)?.[1];
    console.log(`published ${published.length} (~${Math.round((published.length * 50) / 1024)} MB) before Redis cut the subscriber off; received so far ${rec.received.length}; output-buffer disconnections ${disconnections ?? 'n/a'}`);
    expect(cut).toBe(true);
    expect(rec.received.length).toBeLessThan(published.length);
    // and a few more while it is cut off
    for (let i = 0; i < 5; i++) published.push((await publisher.publish(rev(1000 + i))).id);

    bus.proxy.resumeReads();
    await waitFor(() => missing(rec, published).length === 0, 10_000, 'every revocation after resuming').catch(() => undefined);
    expect(missing(rec, published)).toEqual([]);
    expect(rec.received.length).toBe(published.length);
    expect(rec.channel).toEqual([true, false, true]);
    expect(rec.malformed).toEqual([]);
    expect(rec.received.find((r) => r.id === published[1])!.reason.length).toBe(512); // capped on parse
    client.disconnect();
    admin.disconnect();
    await rec.sub.close();
  }, 25_000);
});
