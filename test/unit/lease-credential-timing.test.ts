import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';
import { DEFAULT_ROTATION, type RotationPolicy } from '../../src/sidecar/credentials/rotation.js';

/**
 * When LeaseCredential calls the authority: backoff that grows, a retry never later than the
 * held lease stays usable, and a lease longer than setTimeout's limit not refreshed early.
 * Fake timers drive both setTimeout and the injected monotonic clock (Date.now under them).
 */
beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());
const clock: Clock = { monotonicMs: () => Date.now(), wallMs: () => Date.now() };
const DAY = 86_400_000;

/** An authority that answers per call with a lease of `ttlSeconds`, or fails (undefined). */
function authority(plan: (n: number) => number | undefined) {
  let n = 0;
  const source: LeaseSource = {
    lease: async (credential) => {
      const ttlSeconds = plan(++n);
      if (ttlSeconds === undefined) throw new Error('authority unreachable');
      const value = `timing-test-value-${n}`;
      return { lease: `L${n}`, credential, value, fingerprint: fingerprint(value), version: '1', issuedAt: new Date(0).toISOString(), expiresAt: new Date(ttlSeconds * 1000).toISOString(), ttlSeconds } satisfies LeaseResponse;
    },
    release: async () => undefined,
  };
  return { source, calls: () => n };
}

describe('LeaseCredential timing', () => {
  it('backs off longer after each consecutive failure', async () => {
    const a = authority(() => undefined);
    // random 0.99: retries after 495 ms, then 990 ms, then 1980 ms (base 500, doubling).
    const cred = new LeaseCredential('api', a.source, clock, () => undefined, DEFAULT_ROTATION, () => 0.99);
    await cred.start();
    expect(a.calls()).toBe(1);
    await vi.advanceTimersByTimeAsync(495);
    expect(a.calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(980); // t = 1475: the third try is due at 1485
    expect(a.calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(10);
    expect(a.calls()).toBe(3);
    await cred.close();
  });

  it('retries a failed refresh no later than the held lease stops being usable', async () => {
    // TTL 10 s: usable until 7.5 s (margin ¼ TTL), refresh at 5 s; the backoff alone would wait ~59 s.
    const policy: RotationPolicy = { refreshFraction: 0.5, jitterFraction: 0, backoff: { baseMs: 60_000, capMs: 60_000 } };
    const a = authority((n) => (n === 1 ? 10 : undefined));
    const cred = new LeaseCredential('api', a.source, clock, () => undefined, policy, () => 0.99);
    await cred.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(a.calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(2_499);
    expect(a.calls()).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(a.calls()).toBe(3);
    await cred.close();
  });

  it('does not refresh a 100-day lease when setTimeout’s ~24.8-day limit passes, only at half its TTL', async () => {
    const policy: RotationPolicy = { ...DEFAULT_ROTATION, jitterFraction: 0 };
    const a = authority(() => 100 * 86_400);
    const cred = new LeaseCredential('api', a.source, clock, () => undefined, policy, () => 0.5);
    await cred.start();
    await vi.advanceTimersByTimeAsync(49 * DAY);
    expect(a.calls()).toBe(1);
    await vi.advanceTimersByTimeAsync(1 * DAY);
    expect(a.calls()).toBe(2);
    await cred.close();
  });
});
