import type { Revocation } from '../core/protocol.js';

/**
 * What this authority replica has revoked, kept in memory for as long as it matters, so
 * that a Redis that comes back empty (restarted without persistence: the stream's epoch
 * changed, see src/bus/epoch.ts) can be re-seeded:
 * - the revocation marks of instances (`revoked:instance:<id>` in the store), until the
 *   longest certificate they could hold has expired: without them a revoked instance's
 *   still-valid certificate would lease again;
 * - the revocations themselves, until `at + windowMs` (the stream's own trim window): a
 *   verifier that starts after the reset reads them from the stream again.
 * Only what this replica published or marked: another replica's revocations are re-seeded
 * by that replica (docs/revocation.md says what is and is not guaranteed).
 */
export interface ReseedPlan {
  instances: Array<{ identity: string; untilMs: number }>;
  revocations: Revocation[];
}

export class RevocationMemory {
  private readonly instances = new Map<string, number>();
  private readonly revocations = new Map<string, { r: Revocation; untilMs: number }>();

  constructor(
    private readonly windowMs: number,
    /** Bound on what is kept: the oldest entries go first (a flood of revocations must not grow the heap without end). */
    private readonly max = 10_000,
  ) {}

  markInstance(identity: string, untilMs: number): void {
    const had = this.instances.get(identity);
    if (had === undefined || had < untilMs) {
      this.instances.delete(identity);
      this.instances.set(identity, untilMs);
    }
    bound(this.instances, this.max);
  }

  published(r: Revocation): void {
    this.revocations.set(r.id, { r, untilMs: Date.parse(r.at) + this.windowMs });
    bound(this.revocations, this.max);
  }

  /** Pure: what still matters at `nowMs` (and forgets the rest). */
  plan(nowMs: number): ReseedPlan {
    for (const [k, until] of this.instances) if (until <= nowMs) this.instances.delete(k);
    for (const [k, v] of this.revocations) if (v.untilMs <= nowMs) this.revocations.delete(k);
    return {
      instances: [...this.instances].map(([identity, untilMs]) => ({ identity, untilMs })),
      revocations: [...this.revocations.values()].map((v) => v.r),
    };
  }
}

function bound<K, V>(map: Map<K, V>, max: number): void {
  while (map.size > max) map.delete(map.keys().next().value as K);
}

/**
 * Write back what `plan` holds into a Redis that came back empty: the instance marks
 * first (from then on no replica serves a revoked instance), then the revocations, with
 * their original time. Every step is attempted; the first failure is thrown after, so the
 * caller's next epoch check (which sees the reset again) retries the whole plan.
 */
export async function reseed(
  plan: ReseedPlan,
  to: { revokeIdentity(identity: string, untilMs: number): Promise<void>; republish(r: Omit<Revocation, 'id'>): Promise<unknown> },
): Promise<void> {
  let failed: unknown;
  await Promise.all(plan.instances.map((i) => to.revokeIdentity(i.identity, i.untilMs).catch((err: unknown) => (failed ??= err))));
  // In publication order, one at a time: the new stream keeps their order.
  for (const r of plan.revocations) {
    try {
      await to.republish({ scope: r.scope, target: r.target, reason: r.reason, at: r.at, by: r.by });
    } catch (err) {
      failed ??= err;
    }
  }
  if (failed !== undefined) throw failed;
}
