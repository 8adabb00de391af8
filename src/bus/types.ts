import type { NewRevocation, Revocation } from '../core/protocol.js';

/**
 * The revocation bus (DESIGN §7): publishers and subscribers of Revocations (the entry,
 * its scopes and its parser live in core/protocol.ts). The stream is the source of truth,
 * pub/sub the fast path; every subscriber reads the stream from its last position after
 * every (re)subscription, so none is missed, and ignores duplicates by id.
 */

/** Why revocations may have been lost: see SubscriberEvents.gap. */
export type GapReason = 'trimmed' | 'reset';

export interface SubscriberEvents {
  /** A revocation not seen before, in stream order where it can be known. */
  revocation(r: Revocation): void;
  /** The channel is usable (subscribed, caught up, heartbeat answered) or not. */
  channel(up: boolean): void;
  /**
   * Revocations may have been lost: the stream was trimmed past our position (offline too
   * long), or it was reset — recreated from nothing, its epoch changed (Redis restarted
   * without persistence; see epoch.ts). The owner reconciles everything it holds before
   * serving again.
   */
  gap(why: GapReason): Promise<void> | void;
  /** A message that is not a revocation: logged and skipped, never a crash. */
  malformed(reason: string): void;
  /**
   * Once, if it is so: this connection's Redis user can read the authority's own records
   * (its lease index exists there and answered). Whoever holds this password, an agent
   * sharing the pod included, could then tamper with them (docs/revocation.md, "A Redis
   * user for sidecars").
   */
  exposed?(): void;
}

export interface RevocationPublisher {
  publish(r: NewRevocation): Promise<Revocation>;
  close(): Promise<void>;
}

export interface RevocationSubscriber {
  start(): Promise<void>;
  close(): Promise<void>;
}
