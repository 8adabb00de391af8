import { describe, expect, it } from 'vitest';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import type { Revocation } from '../../src/core/protocol.js';
import type { SubscriberEvents } from '../../src/bus/types.js';

/** The in-process bus of `leash dev`: ids as the Redis stream makes them, same events. */
function listener(): { events: SubscriberEvents; received: Revocation[]; channel: boolean[] } {
  const received: Revocation[] = [];
  const channel: boolean[] = [];
  return { received, channel, events: { revocation: (r) => received.push(r), channel: (up) => channel.push(up), gap: () => undefined, malformed: () => undefined } };
}

describe('memory revocation bus', () => {
  it('ids are <ms>-<seq>: the sequence counts up within a millisecond and restarts at 0 in the next', async () => {
    let now = 1_000;
    const bus = new MemoryRevocationBus(() => now);
    const r = { scope: 'lease' as const, target: 'l1', reason: 'x', by: 't' };
    const ids = [(await bus.publish(r)).id, (await bus.publish(r)).id, (await bus.publish(r)).id];
    now = 2_000;
    ids.push((await bus.publish(r)).id, (await bus.publish(r)).id);
    expect(ids).toEqual(['1000-0', '1000-1', '1000-2', '2000-0', '2000-1']);
  });

  it('refuses what is not a revocation (as a Redis subscriber would) and delivers nothing', async () => {
    const bus = new MemoryRevocationBus(() => 1_000);
    const l = listener();
    await bus.subscriber(l.events).start();
    await expect(bus.publish({ scope: 'Planet' as never, target: 'x', reason: '', by: 't' })).rejects.toThrow(TypeError);
    expect(l.received).toEqual([]);
  });

  it('a closed subscriber reports the channel down and receives nothing more', async () => {
    const bus = new MemoryRevocationBus(() => 1_000);
    const l = listener();
    const sub = bus.subscriber(l.events);
    await sub.start();
    await bus.publish({ scope: 'lease', target: 'a', reason: '', by: 't' });
    await sub.close();
    await bus.publish({ scope: 'lease', target: 'b', reason: '', by: 't' });
    expect(l.channel).toEqual([true, false]);
    expect(l.received.map((r) => r.target)).toEqual(['a']);
  });

  it('a closed bus delivers to nobody', async () => {
    const bus = new MemoryRevocationBus(() => 1_000);
    const l = listener();
    await bus.subscriber(l.events).start();
    await bus.close();
    await bus.publish({ scope: 'lease', target: 'b', reason: '', by: 't' }).catch(() => undefined);
    expect(l.received).toEqual([]);
  });
});
