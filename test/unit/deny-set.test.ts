import { describe, expect, it } from 'vitest';
import type { Revocation } from '../../src/core/protocol.js';
import { DenySet, MAX_FUTURE_MS } from '../../src/verify/deny-set.js';

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

describe('DenySet edges (fail closed)', () => {
  const T1 = T0 + 10_000;
  const now = T0 + 30_000;

  it('a token issued exactly at the cutoff is denied; one ms later it is not (each scope)', () => {
    for (const [scope, target] of [
      ['credential', 'search'],
      ['instance', 'spiffe://leash.local/join/a-1'],
      ['all', '*'],
    ] as const) {
      const set = new DenySet(RETAIN, () => now);
      set.apply(rev(scope, target, T1));
      expect(set.check(token(T1)), scope).toMatchObject({ scope });
      expect(set.check(token(T1 + 1)), scope).toBeUndefined();
    }
  });

  it('a token without a credential claim (an authority that predates it) falls under the latest credential revocation of any name', () => {
    let at = now;
    const set = new DenySet(RETAIN, () => at);
    const search = rev('credential', 'search', T1);
    set.apply(search);
    const bare = (issuedMs: number) => ({ jti: 'j', sub: 's', credential: undefined, issuedMs });
    expect(set.check(bare(T0))).toEqual({ scope: 'credential', target: 'search', id: search.id });
    // Issued at the revocation's time is issued before it (as for a named credential).
    expect(set.check(bare(T1))).toEqual({ scope: 'credential', target: 'search', id: search.id });
    expect(set.check(bare(T1 + 1))).toBeUndefined();
    // A later one of another name moves the cutoff forward; an earlier one does not move it back.
    const other = rev('credential', 'other', T1 + 5_000);
    set.apply(other);
    set.apply(rev('credential', 'third', T1 - 5_000));
    expect(set.check(bare(T1 + 1))).toEqual({ scope: 'credential', target: 'other', id: other.id });
    // A token that names its credential is judged by that name only.
    expect(set.check(token(T1 + 1, { credential: 'search' }))).toBeUndefined();
    // Pruned with the entries, after the retention.
    at = T1 + 5_000 + RETAIN + 1;
    set.prune();
    expect(set.check(bare(T0))).toBeUndefined();
  });

  it('a token without a credential claim is still denied after a prune, until the credential revocation’s retention ends', () => {
    let at = T1;
    const set = new DenySet(RETAIN, () => at);
    const search = rev('credential', 'search', T1);
    set.apply(search);
    // Another entry expires first: the prune that drops it must keep the live cutoff.
    set.apply(rev('instance', 'spiffe://leash.local/join/a-1', T1 - RETAIN + 1_000));
    const bare = { jti: 'j', sub: 's', credential: undefined, issuedMs: T0 };
    at = T1 + RETAIN - 1;
    set.prune();
    expect(set.size).toBe(1);
    expect(set.check(bare)).toEqual({ scope: 'credential', target: 'search', id: search.id });
    at = T1 + RETAIN;
    set.prune();
    expect(set.check(bare)).toBeUndefined();
  });

  it('a revocation this version cannot read (applied as all) is reported as "unknown"', () => {
    const set = new DenySet(RETAIN, () => now);
    const newer = { ...rev('all', '*', T1), notUnderstood: { scope: 'tenant', target: 'acme' } };
    set.apply(newer);
    expect(set.check(token(T1))).toEqual({ scope: 'unknown', target: '*', id: newer.id });
    expect(set.check(token(T1 + 1))).toBeUndefined();
  });

  it('failClosed (a stream gap): everything issued up to then is denied as "gap", later tokens pass', () => {
    const set = new DenySet(RETAIN, () => now);
    set.failClosed(T1);
    expect(set.check(token(T1))).toEqual({ scope: 'gap', target: '*', id: 'gap' });
    expect(set.check(token(T1 + 1))).toBeUndefined();
    expect(set.size).toBe(1);
    // A later gap moves the cutoff forward, an earlier one does not move it back.
    set.failClosed(T1 + 5_000);
    set.failClosed(T1 - 5_000);
    expect(set.check(token(T1 + 5_000))).toMatchObject({ scope: 'gap' });
    // A later 'all' replaces the gap cutoff; an earlier one does not.
    set.apply(rev('all', '*', T1 + 1_000));
    expect(set.check(token(T1 + 5_000))).toMatchObject({ scope: 'gap' });
    set.apply(rev('all', '*', T1 + 9_000));
    expect(set.check(token(T1 + 9_000))).toMatchObject({ scope: 'all' });
  });

  it('a gap cutoff ends after retainMs like any other', () => {
    let t = now;
    const set = new DenySet(RETAIN, () => t);
    set.failClosed(T1);
    t = T1 + RETAIN - 1;
    expect(set.check(token(T0))).toMatchObject({ scope: 'gap' });
    t = T1 + RETAIN;
    expect(set.check(token(T0))).toBeUndefined();
  });

  it('a revocation already older than retainMs (a catch-up of history) is not kept', () => {
    const set = new DenySet(RETAIN, () => T1 + RETAIN);
    for (const scope of ['lease', 'instance', 'credential', 'all'] as const) set.apply(rev(scope, 'x', T1));
    expect(set.size).toBe(0);
    const fresh = new DenySet(RETAIN, () => T1 + RETAIN - 1);
    fresh.apply(rev('credential', 'search', T1));
    expect(fresh.size).toBe(1);
  });

  it('an entry is live until exactly retainMs after its revocation', () => {
    let t = now;
    const set = new DenySet(RETAIN, () => t);
    set.apply(rev('credential', 'search', T1));
    t = T1 + RETAIN - 1;
    expect(set.check(token(T0))).toMatchObject({ scope: 'credential' });
    t = T1 + RETAIN;
    expect(set.check(token(T0))).toBeUndefined();
  });

  it('size counts every kind of entry; expired entries are pruned by check() at most once a minute, and by prune()', () => {
    let t = now;
    const set = new DenySet(RETAIN, () => t);
    set.apply(rev('lease', 'L1', T1));
    set.apply(rev('instance', 'i', T1));
    set.apply(rev('credential', 'c', T1));
    set.apply(rev('all', '*', T1));
    set.apply(rev('credential', 'c2', T1 + 120_000));
    expect(set.size).toBe(5);
    set.check(token(now)); // first check prunes (nothing expired yet)
    t = T1 + RETAIN; // the T1 entries expire now; c2 lives on
    set.check(token(now)); // pruned: more than a minute since the last prune
    expect(set.size).toBe(1);
    set.apply(rev('credential', 'c3', t - RETAIN + 10_000)); // lives 10 s more
    t += 30_000; // c3 expired, but the last prune was under a minute ago
    set.check(token(now));
    expect(set.size).toBe(2);
    t += 31_000;
    set.check(token(now));
    expect(set.size).toBe(1);
    t = T1 + 120_000 + RETAIN;
    set.prune();
    expect(set.size).toBe(0);
  });
});

/**
 * Revocations arrive on a channel anyone with PUBLISH rights can write to (an attacker's
 * pass): whatever their `at`, a forged entry may add denial, never shorten a real one, and
 * never deny without end.
 */
describe('DenySet against forged times', () => {
  it('lease: a forged entry with an old `at` does not end the real revocation early (either order)', () => {
    let now = T0;
    for (const order of ['forged first', 'real first'] as const) {
      const set = new DenySet(RETAIN, () => now);
      const forged = rev('lease', 'lease-x', T0 - RETAIN + 2_000);
      const real = rev('lease', 'lease-x', T0);
      for (const r of order === 'forged first' ? [forged, real] : [real, forged]) set.apply(r);
      now = T0 + 3_000; // past the forged entry's retention
      expect(set.check(token(T0 - 1_000)), order).toMatchObject({ scope: 'lease', id: real.id });
      now = T0 + RETAIN - 1;
      expect(set.check(token(T0 - 1_000)), order).toMatchObject({ scope: 'lease' });
      now = T0;
    }
  });

  it.each(['all', 'credential', 'instance'] as const)('%s: an `at` far in the future is taken as now + MAX_FUTURE_MS', (scope) => {
    let now = T0;
    const set = new DenySet(RETAIN, () => now);
    set.apply(rev(scope, scope === 'all' ? '*' : scope === 'credential' ? 'search' : 'spiffe://leash.local/join/a-1', Date.parse('9999-01-01T00:00:00Z')));
    expect(set.check(token(T0 + MAX_FUTURE_MS))).toBeDefined();
    now = T0 + MAX_FUTURE_MS + 60_000;
    expect(set.check(token(T0 + MAX_FUTURE_MS + 1))).toBeUndefined();
    // and the entry is retained as one at now + MAX_FUTURE_MS would be, not until 9999
    now = T0 + MAX_FUTURE_MS + RETAIN;
    set.prune();
    expect(set.size).toBe(0);
  });

  it('an `at` within MAX_FUTURE_MS ahead (clock skew) is kept as it is', () => {
    const set = new DenySet(RETAIN, () => T0);
    set.apply(rev('all', '*', T0 + 60_000));
    expect(set.check(token(T0 + 60_000))).toBeDefined();
    expect(set.check(token(T0 + 60_001))).toBeUndefined();
  });
});
