/**
 * Revocations (DESIGN §7). The stream is the source of truth, pub/sub the fast path;
 * every subscriber reads the stream from its last position after every (re)subscription,
 * so none is missed, and ignores duplicates by id.
 */
export const REVOCATION_SCOPES = ['lease', 'instance', 'credential', 'all'] as const;
export type RevocationScope = (typeof REVOCATION_SCOPES)[number];

export interface Revocation {
  /** Stream id `<ms>-<seq>`: orders revocations and deduplicates them. */
  id: string;
  scope: RevocationScope;
  /** Lease id, instance identity (SPIFFE ID), credential name, or '*' for all. */
  target: string;
  reason: string;
  /** ISO time of publication (for revocation_lag_seconds). */
  at: string;
  /** Who revoked (admin actor). */
  by: string;
}

export type NewRevocation = Omit<Revocation, 'id' | 'at'>;

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
}

export interface RevocationPublisher {
  publish(r: NewRevocation): Promise<Revocation>;
  close(): Promise<void>;
}

export interface RevocationSubscriber {
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Parse and check one stream entry or pub/sub message; undefined with a reason when malformed. */
export function parseRevocation(fields: Record<string, unknown>, id: string): Revocation | string {
  const { scope, target, reason, at, by } = fields;
  if (!/^\d+-\d+$/.test(id)) return `bad id ${JSON.stringify(id).slice(0, 40)}`;
  if (typeof scope !== 'string' || !(REVOCATION_SCOPES as readonly string[]).includes(scope)) return 'bad scope';
  if (typeof target !== 'string' || target.length === 0 || target.length > 2048) return 'bad target';
  if (typeof at !== 'string' || !Number.isFinite(Date.parse(at))) return 'bad at';
  return {
    id,
    scope: scope as RevocationScope,
    target,
    reason: typeof reason === 'string' ? reason.slice(0, 512) : '',
    at,
    by: typeof by === 'string' ? by.slice(0, 128) : '',
  };
}

/** Stream ids compare by (ms, seq). */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number];
  const [bm, bs] = b.split('-').map(Number) as [number, number];
  return am !== bm ? am - bm : as - bs;
}
