import { parseRevocation, type NewRevocation, type Revocation } from '../core/protocol.js';
import type { RevocationPublisher, RevocationSubscriber, SubscriberEvents } from './types.js';

/** The in-process bus of `leash dev`: same events as the Redis bus, one process only. */
export class MemoryRevocationBus implements RevocationPublisher {
  private readonly subscribers = new Set<SubscriberEvents>();
  private seq = 0;
  private lastMs = 0;

  constructor(private readonly clock: () => number = Date.now) {}

  async publish(r: NewRevocation): Promise<Revocation> {
    const now = this.clock();
    this.seq = now === this.lastMs ? this.seq + 1 : 0;
    this.lastMs = now;
    // Checked and normalised as a subscriber of the Redis bus would receive it.
    const p = parseRevocation({ ...r, at: new Date(now).toISOString() }, `${now}-${this.seq}`);
    if (!p.ok) throw new TypeError(`not a revocation: ${p.message}`);
    const full = p.revocation;
    for (const s of this.subscribers) s.revocation(full);
    return full;
  }

  subscriber(events: SubscriberEvents): RevocationSubscriber {
    return {
      start: async () => {
        this.subscribers.add(events);
        events.channel(true);
      },
      close: async () => {
        this.subscribers.delete(events);
        events.channel(false);
      },
    };
  }

  async close(): Promise<void> {
    this.subscribers.clear();
  }
}
