import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { AuthorityCallError } from '../../src/core/errors.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';

/**
 * A lease refused with 429 and `Retry-After` (the authority's rate limit) is asked for
 * again no sooner than the authority said, however short the backoff would have been.
 */
afterEach(() => {
  vi.useRealTimers();
});

function leaseResponse(n: number, nowMs: number): LeaseResponse {
  const value = `retry-after-test-value-${n}`;
  return {
    lease: `L${n}`,
    credential: 'search',
    value,
    fingerprint: fingerprint(value),
    version: '1',
    issuedAt: new Date(nowMs).toISOString(),
    expiresAt: new Date(nowMs + 3_600_000).toISOString(),
    ttlSeconds: 3_600,
  };
}

describe('LeaseCredential and Retry-After', () => {
  it.each([
    ['429 with Retry-After: 5', 5_000, 5_000],
    ['429 without Retry-After', undefined, 0],
  ])('%s: the retry waits %s ms', async (_name, retryAfterMs, expectedWaitMs) => {
    vi.useFakeTimers();
    const clock: Clock = { monotonicMs: () => Date.now(), wallMs: () => Date.now() };
    const calls: number[] = [];
    const source: LeaseSource = {
      lease: async () => {
        calls.push(Date.now());
        if (calls.length === 1) {
          throw new AuthorityCallError('retryable', 'authority answered 429 (LEASH_ERR_RATE_LIMITED) to POST /v1/leases', { status: 429, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
        }
        return leaseResponse(calls.length, Date.now());
      },
      release: async () => undefined,
    };
    // random 0: the backoff alone would retry at once.
    const cred = new LeaseCredential('search', source, clock, () => undefined, undefined, () => 0);
    await cred.start();
    expect(calls).toHaveLength(1);
    if (expectedWaitMs > 0) {
      await vi.advanceTimersByTimeAsync(expectedWaitMs - 1);
      expect(calls).toHaveLength(1);
    }
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    expect(calls[1]! - calls[0]!).toBe(expectedWaitMs);
    await cred.close();
  });
});
