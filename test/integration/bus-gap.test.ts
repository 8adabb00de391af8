import { describe, expect, it } from 'vitest';
import { missing, plainClient, publisherFor, recorder, redisBehindProxy, rev, sleep, waitFor } from '../helpers/bus-harness.js';

/**
 * DESIGN §7: a subscriber offline while the stream was trimmed past its position may have
 * lost revocations: gap() is called — and awaited — before the channel is reported up,
 * so the owner reconciles before serving. Detected by XINFO STREAM max-deleted-entry-id
 * (Redis ≥ 7), or by the stream being gone (restart without persistence).
 */
const KEY = 'leash:revocations';
const bus = redisBehindProxy();

describe('revocation bus: gap after trimming', () => {
  it('calls gap() before channel(true) for the subscriber that fell behind the trim, and not for one that did not', async () => {
    const admin = plainClient(bus.redis.url);
    const behind = recorder(bus.proxy.url, {}, 300); // gap() takes 300 ms: channel(true) must wait for it
    const current = recorder(bus.redis.url);
    await Promise.all([behind.sub.start(), current.sub.start()]);
    const { publisher, client } = publisherFor(bus.redis.url, 60_000);
    const early: string[] = [];
    for (let i = 0; i < 5; i++) early.push((await publisher.publish(rev(i))).id);
    await waitFor(() => missing(behind, early).length === 0 && missing(current, early).length === 0, 2_000, 'early ones');

    bus.proxy.partition();
    await waitFor(() => !behind.up, 5_000, 'behind: channel down');
    const later: string[] = [];
    for (let i = 0; i < 10; i++) {
      later.push((await publisher.publish(rev(100 + i))).id);
      await sleep(2);
    }
    // Trim past behind's position: the first 7 of the later ones are gone.
    await admin.xtrim(KEY, 'MINID', later[7]!);
    await waitFor(() => missing(current, later).length === 0, 2_000, 'current has all');

    bus.proxy.cutAll();
    bus.proxy.heal();
    await waitFor(() => behind.up, 8_000, 'behind: channel up again');
    expect(behind.gaps).toBe(1);
    // gap() ran to completion before the channel was reported up
    const tail = behind.log.slice(behind.log.indexOf('channel:false'));
    expect(tail).toEqual(['channel:false', 'gap:start', 'gap:end', 'channel:true']);
    // what is still in the stream arrives; the trimmed ones cannot
    expect(missing(behind, later.slice(7))).toEqual([]);
    expect(missing(behind, later.slice(0, 7)).length).toBe(7);

    // The subscriber that was not past the trim: reconnects, no gap.
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => current.channel.length >= 3 && current.up && behind.channel.length >= 5 && behind.up, 5_000, 'both resubscribed');
    expect(current.gaps).toBe(0);
    expect(current.log).toEqual(['channel:true', 'channel:false', 'channel:true']);
    expect(behind.gaps).toBe(1); // caught up since: no second gap
    client.disconnect();
    admin.disconnect();
    await behind.sub.close();
    await current.sub.close();
  });

  it('calls gap() when the stream itself is gone (Redis restarted without persistence)', async () => {
    const rec = recorder(bus.redis.url);
    await rec.sub.start();
    const { publisher, client } = publisherFor(bus.redis.url);
    const r = await publisher.publish(rev(1));
    await waitFor(() => rec.ids.has(r.id), 2_000, 'first');
    await bus.redis.restart(); // no persistence: the stream is lost
    await waitFor(() => rec.up && rec.channel.length >= 3, 5_000, 'channel up after restart');
    expect(rec.gaps).toBe(1);
    expect(rec.log.slice(-3)).toEqual(['gap:start', 'gap:end', 'channel:true']);
    client.disconnect();
    await rec.sub.close();
  });
});
