import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import type { Clock } from '../../src/core/clock.js';
import { ConfigError } from '../../src/core/errors.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { AuthFailureRefresher } from '../../src/sidecar/credentials/auth-failure.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';
import {
  DEFAULT_AUTH_FAILURE,
  INITIAL_AUTH_FAILURE,
  authFailureWindowMs,
  decideAuthFailure,
  settleAuthFailure,
  type AuthFailureSkip,
  type AuthFailureState,
} from '../../src/sidecar/credentials/rotation.js';
import { msUntilToken, takeToken } from '../../src/core/token-bucket.js';

const W = DEFAULT_AUTH_FAILURE.windowMs; // 30 s

/** Runs decide (and, when it refreshes, settle with `brings`) as the refresher does. */
function step(state: AuthFailureState, refused: string, held: string | undefined, now: number, brings?: { fingerprint: string; lease: string | undefined }, lease: string | undefined = 'L') {
  const d = decideAuthFailure(state, refused, held, false, now);
  if (!d.refresh) return { refreshed: false, reason: d.reason, state: d.state, newlyFutile: false };
  const s = settleAuthFailure(d.state, { fingerprint: refused, lease }, brings);
  return { refreshed: true, reason: undefined, state: s.state, newlyFutile: s.newlyFutile };
}

describe('decideAuthFailure (pure, injected time)', () => {
  it('refreshes on the first 401 for the credential held', () => {
    const d = decideAuthFailure(INITIAL_AUTH_FAILURE, 'fpA', 'fpA', false, 1_000);
    expect(d).toEqual({ refresh: true, state: { lastAtMs: 1_000, brought: undefined, streak: 0, futile: undefined } });
  });

  it('a 401 for a credential no longer held, or with nothing held, is stale', () => {
    expect(decideAuthFailure(INITIAL_AUTH_FAILURE, 'fpOld', 'fpNew', false, 0)).toMatchObject({ refresh: false, reason: 'stale' });
    expect(decideAuthFailure(INITIAL_AUTH_FAILURE, 'fpA', undefined, false, 0)).toMatchObject({ refresh: false, reason: 'stale' });
  });

  it('coalesces with a refresh under way (every concurrent 401 shares it)', () => {
    expect(decideAuthFailure(INITIAL_AUTH_FAILURE, 'fpA', 'fpA', true, 0)).toMatchObject({ refresh: false, reason: 'coalesced' });
  });

  it('at most one refresh per window, even when every refresh brings a different credential', () => {
    // A JWT issuer: each lease is new, the upstream refuses each. Hammered every 100 ms for 29.9 s after a refresh.
    let state = step(INITIAL_AUTH_FAILURE, 'fp0', 'fp0', 0, { fingerprint: 'fp1', lease: 'L1' }).state;
    for (let t = 100; t < W; t += 100) {
      const r = step(state, 'fp1', 'fp1', t);
      expect(r).toMatchObject({ refreshed: false, reason: 'window' });
      state = r.state;
    }
    expect(step(state, 'fp1', 'fp1', W).refreshed).toBe(true);
  });

  it('the window doubles while each refreshed credential is refused again, up to the cap', () => {
    let state: AuthFailureState = INITIAL_AUTH_FAILURE;
    let now = 0;
    let held = 'fp0';
    const starts: number[] = [];
    // Hammer every second for two hours; each refresh brings a new value, refused again.
    for (let n = 1; now <= 2 * 3_600_000; now += 1_000) {
      const r = step(state, held, held, now, { fingerprint: `fp${n}`, lease: `L${n}` }, `L${n - 1}`);
      state = r.state;
      if (r.refreshed) {
        starts.push(now);
        held = `fp${n++}`;
      }
    }
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    expect(gaps.slice(0, 6)).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 600_000]);
    expect(new Set(gaps.slice(5))).toEqual(new Set([600_000]));
    expect(authFailureWindowMs(0)).toBe(30_000);
    expect(authFailureWindowMs(5)).toBe(600_000);
    expect(authFailureWindowMs(1_000)).toBe(600_000);
  });

  it('a different credential held (a scheduled rotation) resets the growth but never the base window', () => {
    // Three refused refreshes in a row: the next gap would be 4·W.
    let state: AuthFailureState = { lastAtMs: 0, brought: 'fp3', streak: 2, futile: undefined };
    expect(step(state, 'fp3', 'fp3', 3 * W)).toMatchObject({ refreshed: false, reason: 'window' });
    // The rotation replaced fp3 by fp4 (not brought by a refresh): back to the base window from the last refresh.
    expect(step(state, 'fp4', 'fp4', W - 1)).toMatchObject({ refreshed: false, reason: 'window' });
    const r = step(state, 'fp4', 'fp4', W, { fingerprint: 'fp5', lease: 'L5' });
    expect(r.refreshed).toBe(true);
    expect(r.state.streak).toBe(0);
    state = r.state;
    expect(step(state, 'fp5', 'fp5', 2 * W - 1)).toMatchObject({ refreshed: false, reason: 'window' });
    expect(step(state, 'fp5', 'fp5', 2 * W).refreshed).toBe(true);
  });

  it('never refreshes again when the fresh lease has the refused fingerprint, until another value is held', () => {
    // A static credential: the refresh brings a new lease with the same value.
    const first = step(INITIAL_AUTH_FAILURE, 'fpS', 'fpS', 0, { fingerprint: 'fpS', lease: 'L2' }, 'L1');
    expect(first).toMatchObject({ refreshed: true, newlyFutile: true });
    expect(first.state.futile).toBe('fpS');
    // Long after any window: still nothing for that value (and the report is not repeated).
    let state = first.state;
    for (const t of [1, W, 10 * W, 1_000 * W]) {
      const r = step(state, 'fpS', 'fpS', t);
      expect(r).toMatchObject({ refreshed: false, reason: 'refused-value', newlyFutile: false });
      state = r.state;
    }
    // The scheduled rotation brought the same value again: still futile.
    expect(step(state, 'fpS', 'fpS', 2_000 * W)).toMatchObject({ reason: 'refused-value' });
    // The operator changed the secret; the rotation brought fpT: a 401 for it refreshes, and the mark is gone.
    const changed = step(state, 'fpT', 'fpT', 2_000 * W, { fingerprint: 'fpU', lease: 'L9' });
    expect(changed.refreshed).toBe(true);
    expect(changed.state.futile).toBeUndefined();
  });

  it('a refresh that failed and kept the old lease is not futile: the window bounds the retry', () => {
    const r = step(INITIAL_AUTH_FAILURE, 'fpA', 'fpA', 0, { fingerprint: 'fpA', lease: 'L1' }, 'L1');
    expect(r).toMatchObject({ refreshed: true, newlyFutile: false });
    expect(r.state.futile).toBeUndefined();
    expect(step(r.state, 'fpA', 'fpA', W - 1)).toMatchObject({ refreshed: false, reason: 'window' });
    // Held is what the refresh left (the same lease): counted as refused again, so the window then grows.
    const again = step(r.state, 'fpA', 'fpA', W, { fingerprint: 'fpA', lease: 'L1' }, 'L1');
    expect(again.refreshed).toBe(true);
    expect(step(again.state, 'fpA', 'fpA', W + 2 * W - 1)).toMatchObject({ reason: 'window' });
  });

  it('a source re-read with the same value (a file, no lease id) is futile too', () => {
    const r = step(INITIAL_AUTH_FAILURE, 'fpF', 'fpF', 0, { fingerprint: 'fpF', lease: undefined }, undefined);
    expect(r).toMatchObject({ refreshed: true, newlyFutile: true });
  });
});

describe('audit stream token bucket (pure)', () => {
  it('allows burst at once, then perMinute, and says when the next token is due', () => {
    const limit = { burst: 3, perMinute: 60 };
    let bucket = { tokens: 3, atMs: 0 };
    const oks: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const t = takeToken(bucket, 0, limit);
      bucket = t.bucket;
      oks.push(t.ok);
    }
    expect(oks).toEqual([true, true, true, false, false]);
    expect(msUntilToken(bucket, limit)).toBe(1_000);
    expect(takeToken(bucket, 999, limit).ok).toBe(false);
    expect(takeToken(bucket, 1_000, limit).ok).toBe(true);
    // Never more than burst, however long it was idle.
    expect(takeToken({ tokens: 0, atMs: 0 }, 3_600_000, limit).bucket.tokens).toBe(2);
  });
});

/** The refresher over a real LeaseCredential; the authority is a counting stand-in behind LeaseSource. */
describe('AuthFailureRefresher (stepped clock)', () => {
  function setup(valueFor: (n: number) => string) {
    let now = 0;
    const clock: Clock = { monotonicMs: () => now, wallMs: () => 1_700_000_000_000 + now };
    let leases = 0;
    const gate: Array<() => void> = [];
    const source: LeaseSource = {
      lease: async (credential) => {
        const n = ++leases;
        // The first lease answers at once; later ones wait for release(), so a refresh stays in flight.
        if (n > 1) await new Promise<void>((r) => gate.push(r));
        const value = valueFor(n);
        const issued = new Date(clock.wallMs());
        const resp: LeaseResponse = {
          lease: `L${n}`,
          credential,
          value,
          fingerprint: fingerprint(value),
          version: '1',
          issuedAt: issued.toISOString(),
          expiresAt: new Date(issued.getTime() + 3_600_000).toISOString(),
          ttlSeconds: 3_600,
        };
        return resp;
      },
      release: async () => undefined,
    };
    const provider = new LeaseCredential('api', source, clock, () => undefined);
    const skipped: AuthFailureSkip[] = [];
    const futile: string[] = [];
    const refresher = new AuthFailureRefresher(provider, clock, { skipped: (r) => skipped.push(r), refusedValue: (f) => futile.push(f), failed: () => undefined });
    return {
      provider,
      refresher,
      skipped,
      futile,
      leases: () => leases,
      advance: (ms: number) => (now += ms),
      answer: () => gate.splice(0).forEach((r) => r()),
      close: () => provider.close(),
    };
  }

  it('twenty concurrent 401s share one refresh; later 401s wait out the window', async () => {
    const t = setup((n) => `jwt-like-value-${n}`);
    await t.provider.start();
    const refused = t.provider.current()!;
    const runs = Array.from({ length: 20 }, () => t.refresher.onAuthFailure(refused));
    expect(new Set(runs).size).toBe(1);
    expect(t.skipped).toEqual(Array(19).fill('coalesced'));
    t.answer();
    await runs[0];
    expect(t.leases()).toBe(2);
    // The new credential is refused too: nothing until the window has passed.
    const second = t.provider.current()!;
    t.advance(W - 1);
    expect(t.refresher.onAuthFailure(second)).toBeUndefined();
    expect(t.refresher.onAuthFailure(refused)).toBeUndefined(); // a straggler for the old one
    expect(t.skipped.slice(19)).toEqual(['window', 'stale']);
    t.advance(1);
    const run = t.refresher.onAuthFailure(second)!;
    t.answer();
    await run;
    expect(t.leases()).toBe(3);
    // Refused again: now the window is doubled.
    t.advance(2 * W - 1);
    expect(t.refresher.onAuthFailure(t.provider.current()!)).toBeUndefined();
    expect(t.leases()).toBe(3);
    await t.close();
  });

  it('a lease that brings the refused value back stops refreshing for good, reported once', async () => {
    const t = setup(() => 'sk-static-value-the-upstream-refuses');
    await t.provider.start();
    const run = t.refresher.onAuthFailure(t.provider.current()!)!;
    t.answer();
    await run;
    expect(t.leases()).toBe(2);
    expect(t.futile).toEqual([fingerprint('sk-static-value-the-upstream-refuses')]);
    for (let i = 0; i < 100; i++) {
      t.advance(10_000); // 1,000 s in all: well inside the hour-long lease
      expect(t.refresher.onAuthFailure(t.provider.current()!)).toBeUndefined();
    }
    expect(t.leases()).toBe(2);
    expect(t.skipped).toEqual(Array(100).fill('refused-value'));
    expect(t.futile).toHaveLength(1);
    await t.close();
  });
});

describe('config: rotation.authFailure and revocations.auditStream', () => {
  const base = { routes: { api: { upstream: 'https://api.example', credential: { env: 'K' }, inject: { header: 'x-api-key' }, allow: ['GET /**'] } } };
  const parse = (extra: Record<string, unknown>) => parseConfig(sidecarSchema, JSON.stringify({ ...base, ...extra }), {});

  it('defaults: 30 s window doubling to 10 min; 100 entries at once, 30 a minute', () => {
    const c = parse({ revocations: { redis: 'redis://127.0.0.1:6379' } });
    expect(c.rotation.authFailure).toEqual({ window: 30_000, cap: 600_000 });
    expect(c.revocations!.auditStream).toEqual({ burst: 100, perMinute: 30 });
    expect(parse({ rotation: { authFailure: { window: '5s', cap: '1m' } } }).rotation.authFailure).toEqual({ window: 5_000, cap: 60_000 });
  });

  it('refuses a cap below the window, a tiny window and a non-positive budget, naming the key', () => {
    const issues = (extra: Record<string, unknown>) => {
      try {
        parse(extra);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).issues.join('\n');
      }
      throw new Error('expected a ConfigError');
    };
    expect(issues({ rotation: { authFailure: { window: '1m', cap: '30s' } } })).toContain('rotation.authFailure.cap');
    expect(issues({ rotation: { authFailure: { window: '10ms' } } })).toContain('rotation.authFailure.window');
    expect(issues({ revocations: { redis: 'redis://127.0.0.1:6379', auditStream: { burst: 0 } } })).toContain('revocations.auditStream.burst');
    expect(issues({ revocations: { redis: 'redis://127.0.0.1:6379', auditStream: { perMinute: -1 } } })).toContain('revocations.auditStream.perMinute');
  });
});
