import { describe, expect, it } from 'vitest';
import { DenySet } from '../../src/verify/deny-set.js';

/**
 * A verifier that receives revocations but checks no token for a while (an API idle at
 * night, a batch service between runs) must still forget what no longer matters: the
 * deny-set was pruned only by check(), so with no checks it held every revocation it
 * ever received. A day of revocations, one a second, on an injected clock.
 */
describe('DenySet memory with time', () => {
  it('stays bounded by one retention window of revocations when no token is checked', () => {
    const RETAIN = 60_000;
    let now = Date.parse('2026-01-01T00:00:00Z');
    const set = new DenySet(RETAIN, () => now);
    let peak = 0;
    for (let i = 0; i < 86_400; i++) {
      now += 1_000;
      const scope = (['lease', 'instance', 'credential'] as const)[i % 3]!;
      set.apply({ id: `${now}-0`, scope, target: `${scope}-${i}`, reason: 'soak', at: new Date(now).toISOString(), by: 'soak' });
      peak = Math.max(peak, set.size);
    }
    // One window (60) plus at most one prune interval (60 s) of entries already over.
    expect(peak).toBeLessThanOrEqual(125);
    // And what it holds still denies: the newest revocation is in force.
    expect(set.check({ jti: 'lease-86397', sub: 'x', credential: undefined, issuedMs: now - 5_000 })).toMatchObject({ scope: 'lease' });
  });
});
