import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ROTATION,
  INITIAL_AUTH_FAILURE,
  decideAuthFailure,
  refreshAtMs,
  retryAtMs,
  settleAuthFailure,
  usableUntilMs,
  type AuthFailureState,
} from '../../src/sidecar/credentials/rotation.js';

/**
 * Edges of the pure rotation decisions: a refresh instant clamped to the usable window, a
 * retry exactly at the usable deadline, and how auth-failure state is carried or reset.
 */

describe('refreshAtMs clamps to the end of the usable window', () => {
  it('never schedules a refresh after the lease stops being usable, however late the policy asks', () => {
    // refreshFraction 1 asks for receipt + TTL; the margin (5 s for 100 s) must pull it back.
    const lease = { receivedAtMs: 1_000_000, ttlMs: 100_000 };
    const late = { ...DEFAULT_ROTATION, refreshFraction: 1, jitterFraction: 0 };
    expect(usableUntilMs(lease)).toBe(1_095_000);
    expect(refreshAtMs(lease, 0.5, late)).toBe(1_095_000);
  });
});

describe('retryAtMs at the usable deadline', () => {
  it('does not clamp a retry to a deadline that is exactly now (nothing usable is left to protect)', () => {
    const lease = { receivedAtMs: 0, ttlMs: 100_000 };
    const now = usableUntilMs(lease);
    expect(now).toBe(95_000);
    // With a deadline of now the clamp would make the retry immediate: a hot loop against the authority.
    expect(retryAtMs(lease, now, 3, 0.99)).toBeGreaterThan(now);
  });
  it('still clamps a retry to a deadline just ahead of now', () => {
    const lease = { receivedAtMs: 0, ttlMs: 100_000 };
    expect(retryAtMs(lease, 94_999, 3, 0.99)).toBe(95_000);
  });
});

describe('decideAuthFailure state carrying', () => {
  it('keeps the remembered futile fingerprint when nothing is held (stale, nothing to judge it against)', () => {
    const state: AuthFailureState = { ...INITIAL_AUTH_FAILURE, futile: 'sha256:aaa' };
    const d = decideAuthFailure(state, 'sha256:aaa', undefined, false, 10_000);
    expect(d).toEqual({ refresh: false, reason: 'stale', state });
  });
  it('clears only futility when another value is held: the window since the last refresh still applies', () => {
    const state: AuthFailureState = { lastAtMs: 1_000, brought: undefined, streak: 2, futile: 'sha256:aaa' };
    const d = decideAuthFailure(state, 'sha256:bbb', 'sha256:bbb', false, 2_000);
    expect(d).toEqual({ refresh: false, reason: 'window', state: { ...state, futile: undefined } });
  });
});

describe('settleAuthFailure', () => {
  it('after a refresh that left nothing, keeps the window and streak and reports nothing futile', () => {
    const state: AuthFailureState = { lastAtMs: 1_000, brought: 'sha256:old', streak: 3, futile: undefined };
    const s = settleAuthFailure(state, { fingerprint: 'sha256:aaa', lease: 'L1' }, undefined);
    expect(s).toEqual({ state: { lastAtMs: 1_000, brought: undefined, streak: 3, futile: undefined }, newlyFutile: false });
  });
  it('a re-read static source (no lease ids) handing back the refused value is futile', () => {
    const s = settleAuthFailure(INITIAL_AUTH_FAILURE, { fingerprint: 'sha256:aaa', lease: undefined }, { fingerprint: 'sha256:aaa', lease: undefined });
    expect(s.newlyFutile).toBe(true);
    expect(s.state.futile).toBe('sha256:aaa');
  });
  it('reports futility only once: a value already known futile is not newly futile', () => {
    const state: AuthFailureState = { ...INITIAL_AUTH_FAILURE, futile: 'sha256:aaa' };
    const s = settleAuthFailure(state, { fingerprint: 'sha256:aaa', lease: 'L1' }, { fingerprint: 'sha256:aaa', lease: 'L2' });
    expect(s).toEqual({ state: { ...state, brought: 'sha256:aaa', futile: 'sha256:aaa' }, newlyFutile: false });
  });
});
