import { describe, expect, it } from 'vitest';
import { fullJitterDelay } from '../../src/core/backoff.js';
import { credentialUsableUntilMs, DEFAULT_ROTATION, isUsable, refreshAtMs, retryAtMs, safetyMarginMs, usable, usableUntilMs } from '../../src/sidecar/credentials/rotation.js';

const hour = 3_600_000;

describe('rotation decision (pure, injected time and randomness)', () => {
  it('refreshes at half the TTL ± 10 % after receipt', () => {
    const lease = { receivedAtMs: 1_000, ttlMs: hour };
    expect(refreshAtMs(lease, 0.5)).toBe(1_000 + hour / 2);
    expect(refreshAtMs(lease, 0)).toBe(1_000 + hour * 0.4);
    expect(refreshAtMs(lease, 0.999999)).toBeCloseTo(1_000 + hour * 0.6, -1);
  });

  it('depends only on the monotonic receipt time, not on wall-clock', () => {
    // Same lease received at two monotonic instants: the schedule shifts by exactly that.
    const a = refreshAtMs({ receivedAtMs: 0, ttlMs: 60_000 }, 0.3);
    const b = refreshAtMs({ receivedAtMs: 5_000, ttlMs: 60_000 }, 0.3);
    expect(b - a).toBe(5_000);
  });

  it('keeps a safety margin of max(5 s, 5 % TTL), never more than a quarter of the lease', () => {
    expect(safetyMarginMs(hour)).toBe(0.05 * hour);
    expect(safetyMarginMs(60_000)).toBe(5_000);
    expect(safetyMarginMs(2_000)).toBe(500);
    expect(safetyMarginMs(10_000)).toBe(2_500);
    const lease = { receivedAtMs: 0, ttlMs: 60_000 };
    expect(usableUntilMs(lease)).toBe(55_000);
    expect(isUsable(lease, 54_999)).toBe(true);
    expect(isUsable(lease, 55_000)).toBe(false);
  });

  it('usable(): one rule for a held credential — before its expiry less the margin', () => {
    // Acquired at 10 s, valid for 60 s: the margin is the 5 s floor, so usable until 65 s.
    const held = { value: 'v', fingerprint: 'fp', acquiredAtMs: 10_000, expiresAtMs: 70_000, lease: 'L' };
    expect(credentialUsableUntilMs(held)).toBe(65_000);
    expect(credentialUsableUntilMs(held)).toBe(usableUntilMs({ receivedAtMs: 10_000, ttlMs: 60_000 }));
    expect(usable(held, 64_999)).toBe(true);
    expect(usable(held, 65_000)).toBe(false);
    // A source without expiry (file, env) is usable whenever it is held.
    const unexpiring = { ...held, expiresAtMs: undefined };
    expect(credentialUsableUntilMs(unexpiring)).toBe(Infinity);
    expect(usable(unexpiring, Number.MAX_SAFE_INTEGER)).toBe(true);
  });

  it('refreshes well before the credential becomes unusable even for tiny TTLs', () => {
    for (const ttlMs of [1_000, 2_000, 10_000, 3_600_000]) {
      for (const r of [0, 0.5, 0.9999]) {
        const lease = { receivedAtMs: 0, ttlMs };
        // At least 15 % of the lease is left for the refresh call to complete.
        expect(usableUntilMs(lease) - refreshAtMs(lease, r)).toBeGreaterThanOrEqual(0.15 * ttlMs - 1);
      }
    }
  });

  it('backs off with full jitter, capped, and never past the usable deadline', () => {
    const p = DEFAULT_ROTATION.backoff;
    expect(fullJitterDelay(p, 0, 0.999)).toBeLessThan(p.baseMs);
    expect(fullJitterDelay(p, 3, 0.5)).toBe(Math.floor(0.5 * p.baseMs * 8));
    expect(fullJitterDelay(p, 100, 0.999)).toBeLessThan(p.capMs);
    expect(fullJitterDelay(p, 100, 0)).toBe(0);
    const lease = { receivedAtMs: 0, ttlMs: 60_000 };
    // 10 failures would wait up to 30 s, but the credential stops being usable at 55 s.
    expect(retryAtMs(lease, 50_000, 10, 0.99)).toBe(55_000);
    // Once nothing valid is held, plain backoff applies.
    expect(retryAtMs(lease, 56_000, 2, 0.5)).toBe(56_000 + 1_000);
    expect(retryAtMs(undefined, 0, 1, 0.5)).toBe(500);
  });

  it("waits for the authority's Retry-After, capped at the backoff's cap, and still never past the usable deadline", () => {
    const cap = DEFAULT_ROTATION.backoff.capMs;
    // Backoff alone would retry at 500 ms; the authority asked for 10 s.
    expect(retryAtMs(undefined, 0, 1, 0.5, DEFAULT_ROTATION, 10_000)).toBe(10_000);
    // A longer backoff is kept: Retry-After is a floor, not a replacement.
    expect(retryAtMs(undefined, 0, 10, 0.9, DEFAULT_ROTATION, 1_000)).toBe(Math.floor(0.9 * cap));
    // An authority cannot park a sidecar for a day.
    expect(retryAtMs(undefined, 0, 1, 0.5, DEFAULT_ROTATION, 86_400_000)).toBe(cap);
    // With a credential in hand, the retry comes before it stops being usable (55 s here).
    expect(retryAtMs({ receivedAtMs: 0, ttlMs: 60_000 }, 50_000, 1, 0.5, DEFAULT_ROTATION, 20_000)).toBe(55_000);
    expect(retryAtMs(undefined, 0, 1, 0.5, DEFAULT_ROTATION, 0)).toBe(500);
  });
});
