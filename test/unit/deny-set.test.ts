import { describe, expect, it } from 'vitest';
import type { Revocation } from '../../src/bus/types.js';
import { DenySet } from '../../src/verify/revocations.js';

/**
 * The verifier's deny-set as a pure structure (DESIGN §7 applied to tokens), on an
 * injected clock. A credential or instance revoked twice must be cut off at the LATER
 * revocation: a token issued between the two was issued before the second one.
 */
const T0 = Date.parse('2026-01-01T00:00:00Z');
const RETAIN = 3_600_000;
let seq = 0;
const rev = (scope: Revocation['scope'], target: string, atMs: number): Revocation => ({
  id: `${atMs}-${seq++}`,
  scope,
  target,
  reason: 'test',
  at: new Date(atMs).toISOString(),
  by: 'test',
});
const token = (issuedMs: number, over: Partial<{ jti: string; sub: string; credential: string }> = {}) => ({
  jti: 'lease-x',
  sub: 'spiffe://leash.local/join/a-1',
  credential: 'search',
  issuedMs,
  ...over,
});

describe('DenySet keeps the latest cutoff per target', () => {
  const T1 = T0 + 10_000;
  const T2 = T0 + 20_000;
  const between = T0 + 15_000;
  const after = T0 + 25_000;

  for (const [scope, target, over] of [
    ['credential', 'search', {}],
    ['instance', 'spiffe://leash.local/join/a-1', {}],
  ] as const) {
    it(`${scope}: T1 then T2 → a token issued between them is denied by the T2 revocation`, () => {
      const set = new DenySet(RETAIN, () => after);
      set.apply(rev(scope, target, T1));
      set.apply(rev(scope, target, T2));
      const denied = set.check(token(between, over));
      expect(denied).toMatchObject({ scope, target });
      expect(denied!.id.startsWith(`${T2}-`)).toBe(true);
      // Issued after both: valid.
      expect(set.check(token(after, over))).toBeUndefined();
    });
    it(`${scope}: an older revocation arriving late (catch-up) does not move the cutoff back`, () => {
      const set = new DenySet(RETAIN, () => after);
      set.apply(rev(scope, target, T2));
      set.apply(rev(scope, target, T1));
      expect(set.check(token(between, over))).toMatchObject({ scope, target });
    });
  }

  it('all: the later of two cutoffs wins, and a gap fail-close never lowers it', () => {
    const set = new DenySet(RETAIN, () => after);
    set.apply(rev('all', '*', T1));
    set.apply(rev('all', '*', T2));
    expect(set.check(token(between))).toMatchObject({ scope: 'all' });
    set.failClosed(T1);
    expect(set.check(token(between))).toMatchObject({ scope: 'all' });
    expect(set.check(token(after))).toBeUndefined();
  });

  it('scopes are independent: another credential or instance is untouched', () => {
    const set = new DenySet(RETAIN, () => after);
    set.apply(rev('credential', 'search', T2));
    set.apply(rev('instance', 'spiffe://leash.local/join/a-1', T2));
    expect(set.check(token(between, { credential: 'openai', sub: 'spiffe://leash.local/join/b-2' }))).toBeUndefined();
  });

  it('a lease revocation denies that jti whatever its issue time; entries expire after retainMs', () => {
    let now = after;
    const set = new DenySet(RETAIN, () => now);
    set.apply(rev('lease', 'L1', T1));
    expect(set.check(token(after + 1, { jti: 'L1' }))).toMatchObject({ scope: 'lease', target: 'L1' });
    expect(set.check(token(after + 1, { jti: 'L2' }))).toBeUndefined();
    now = T1 + RETAIN + 1;
    expect(set.check(token(between, { jti: 'L1' }))).toBeUndefined();
    set.prune();
    expect(set.size).toBe(0);
  });
});
