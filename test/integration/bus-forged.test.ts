import { describe, expect, it } from 'vitest';
import { epochKeyOf } from '../../src/core/protocol.js';
import { missing, plainClient, publisherFor, recorder, redisBehindProxy, rev, waitFor } from '../helpers/bus-harness.js';

/**
 * Whoever may PUBLISH on the revocation channel can send any id (an attacker's pass found
 * it): the subscriber must stay fail-closed. Acting on a forged revocation is safe; what
 * must never happen is a forged *id* making later real revocations look already seen, or
 * keeping the subscriber in a gap loop. The stream (XADD ids) is the history; a pub/sub id
 * is only the publisher's word.
 */
const KEY = 'leash:revocations';
const bus = redisBehindProxy();
const FUTURE = '99999999999999';
/** The dedupe set's size in these tests (10,000 by default): a flood one larger overflows it, as 10,001 forged ids did. */
const REMEMBER = 100;
const forged = (seq: number) => JSON.stringify({ id: `${FUTURE}-${seq}`, scope: 'lease', target: 'nothing', reason: '', at: new Date().toISOString(), by: 'forger' });

async function flood(n: number): Promise<void> {
  const c = plainClient(bus.redis.url);
  for (let start = 0; start < n; start += 1_000) {
    const p = c.pipeline();
    for (let i = start; i < Math.min(n, start + 1_000); i++) p.publish(KEY, forged(i));
    await p.exec();
  }
  c.disconnect();
}

/** Real revocations: some announced on pub/sub, one written to the stream only (its PUBLISH lost). */
async function realRevocations(url: string): Promise<string[]> {
  const { publisher, client } = publisherFor(url);
  const ids: string[] = [];
  for (const scope of ['lease', 'instance', 'all'] as const) ids.push((await publisher.publish(rev(ids.length, { scope, target: scope === 'all' ? '*' : `t-${scope}` }))).id);
  ids.push((await client.xadd(KEY, '*', 'scope', 'lease', 'target', 'stream-only', 'reason', '', 'at', new Date().toISOString(), 'by', 'test')) as string);
  client.disconnect();
  return ids;
}

describe('revocation bus: forged pub/sub ids', () => {
  it('more far-future ids than the dedupe set holds, on a live channel: later revocations all arrive, and the gaps stop with the flood', async () => {
    const rec = recorder(bus.redis.url, { pollMs: 200, remember: REMEMBER });
    await rec.sub.start();
    await flood(REMEMBER + 1);
    await waitFor(() => rec.received.length >= REMEMBER + 1, 10_000, 'the forged ones (acting on them is safe)');
    const real = await realRevocations(bus.redis.url);
    await waitFor(() => missing(rec, real).length === 0, 5_000, `real revocations after the flood (missing ${missing(rec, real).join(', ')})`);
    // A forged position is dropped at the next poll (a gap: fail closed), once per poll at
    // most while forged ids keep coming; after the flood, polls find nothing more.
    await new Promise((r) => setTimeout(r, 600));
    const gaps = rec.gaps;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(rec.gaps).toBe(gaps);
    await rec.sub.close();
  });

  it('more far-future ids than the dedupe set holds while the catch-up cannot complete: once it does, later revocations all arrive', async () => {
    const rec = recorder(bus.redis.url, { pollMs: 200, remember: REMEMBER });
    await rec.sub.start();
    const admin = plainClient(bus.redis.url);
    const epochKey = epochKeyOf(KEY);
    const epoch = await admin.get(epochKey);
    // The epoch key of the wrong type: the resubscribed channel stays down (catch-up fails).
    await admin.del(epochKey);
    await admin.rpush(epochKey, 'x');
    await admin.client('KILL', 'TYPE', 'PUBSUB');
    await waitFor(() => rec.channel.includes(false), 5_000, 'channel down');
    // Subscribed again (ioredis reconnects), its catch-up failing: still down.
    for (let i = 0; i < 100 && Number(((await admin.pubsub('NUMSUB', KEY)) as [string, number])[1]) < 1; i++) await new Promise((r) => setTimeout(r, 50));
    expect(rec.up).toBe(false);
    await flood(REMEMBER + 1);
    await waitFor(() => rec.received.length >= REMEMBER + 1, 10_000, `the forged ones ${rec.received.length} ${rec.log.join(',')} ${rec.malformed.slice(-2).join(';')}`);
    await admin.del(epochKey);
    await admin.set(epochKey, epoch!);
    await waitFor(() => rec.up, 8_000, 'channel up again');
    const real = await realRevocations(bus.redis.url);
    await waitFor(() => missing(rec, real).length === 0, 5_000, `real revocations after the flood (missing ${missing(rec, real).join(', ')})`);
    admin.disconnect();
    await rec.sub.close();
  });

  it('a pub/sub id the stream later hands out for another revocation does not hide it', async () => {
    const rec = recorder(bus.redis.url, { pollMs: 200 });
    await rec.sub.start();
    const admin = plainClient(bus.redis.url);
    // The next id the stream will generate, announced first for something else.
    const next = `${Date.now() + 2_000}-0`;
    await admin.publish(KEY, JSON.stringify({ id: next, scope: 'lease', target: 'decoy', reason: '', at: new Date().toISOString(), by: 'forger' }));
    await waitFor(() => rec.ids.has(next), 2_000, 'the decoy');
    await admin.xadd(KEY, next, 'scope', 'lease', 'target', 'real', 'reason', '', 'at', new Date().toISOString(), 'by', 'test');
    await waitFor(() => rec.received.some((r) => r.id === next && r.target === "real"), 5_000, `the real revocation under the same id ${JSON.stringify(rec.received.slice(-3))} ${rec.log.join(",")} ${rec.malformed.slice(-2).join(";")}`);
    admin.disconnect();
    await rec.sub.close();
  });
});
