import { randomBytes } from 'node:crypto';
import type { RedisClient } from './redis.js';

/**
 * The revocation stream's EPOCH: a random value stored next to the stream, written by
 * whoever finds it absent (publishers and subscribers alike, `SET NX`) and never changed
 * otherwise. Every party remembers the epoch it saw and reads it again on every
 * (re)connection and poll: a different value means the stream was recreated from nothing
 * (Redis restarted without persistence, FLUSHALL, the keys deleted) and revocations
 * published before may be lost — even for a subscriber whose position is `0-0`, which
 * the stream alone cannot tell from "nothing published yet".
 *
 * The key is `epochKeyOf(stream)` (core/protocol.ts): in the stream's hash slot, so on a
 * Cluster a node that loses the stream loses the epoch with it, and never one without the other.
 */

export function newEpoch(nowMs: number): string {
  return `${nowMs}-${randomBytes(8).toString('hex')}`;
}

/**
 * The stream's epoch now, created when absent (`create`). A connection that may not write
 * (read-only ACL, a replica) only reads it: null when nobody has written one yet.
 */
export async function currentEpoch(client: RedisClient, key: string, create: boolean, nowMs: number): Promise<string | null> {
  if (create) {
    try {
      await client.set(key, newEpoch(nowMs), 'NX');
    } catch (err) {
      // Not allowed to write: fall back to reading. Anything else (timeout, connection) is
      // the caller's failure to report.
      if (!/NOPERM|READONLY|no permissions/i.test(String((err as Error)?.message))) throw err;
    }
  }
  return client.get(key);
}

/**
 * Pure decision: has the stream been reset since we last saw it?
 *   remembered undefined  never looked: nothing to compare (first start);
 *   remembered null       nobody had written an epoch then: a reset cannot be told apart
 *                         from a first publication, so not a reset (the stream checks
 *                         still apply);
 *   otherwise             any other value now — absent included — is a reset.
 */
export function epochReset(remembered: string | null | undefined, now: string | null): boolean {
  if (remembered === undefined || remembered === null) return false;
  return now !== remembered;
}
