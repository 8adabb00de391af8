import { describe, expect, it } from 'vitest';
import { KeyedRateLimiter } from '../../src/authority/rate-limit.js';

/** The per-identity lease limiter, over an injected clock. */
describe('KeyedRateLimiter', () => {
  const at = { ms: 0 };
  const now = () => at.ms;

  it('allows a burst, then one per 60/perMinute seconds, with the wait to the next token', () => {
    at.ms = 0;
    const l = new KeyedRateLimiter({ perMinute: 60, burst: 3 }, now);
    for (let i = 0; i < 3; i++) expect(l.take('a')).toEqual({ allowed: true });
    expect(l.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1, first: true });
    expect(l.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1, first: false });
    at.ms += 999;
    expect(l.take('a').allowed).toBe(false);
    at.ms += 1;
    expect(l.take('a')).toEqual({ allowed: true });
    // Refusing again after an allowed call is a new "first".
    expect(l.take('a')).toMatchObject({ allowed: false, first: true });
  });

  it('rounds the wait up to whole seconds, at least 1', () => {
    at.ms = 0;
    const l = new KeyedRateLimiter({ perMinute: 7, burst: 1 }, now);
    l.take('a');
    // 60/7 = 8.57 s per token.
    expect(l.take('a')).toMatchObject({ allowed: false, retryAfterSeconds: 9 });
    at.ms += 8_000;
    expect(l.take('a')).toMatchObject({ allowed: false, retryAfterSeconds: 1 });
  });

  it('refills to the burst at most, and keys are independent', () => {
    at.ms = 0;
    const l = new KeyedRateLimiter({ perMinute: 60, burst: 2 }, now);
    l.take('a');
    l.take('a');
    at.ms += 3_600_000;
    expect(l.take('a').allowed).toBe(true);
    expect(l.take('a').allowed).toBe(true);
    expect(l.take('a').allowed).toBe(false);
    expect(l.take('b').allowed).toBe(true);
  });

  it('a clock that goes back refills nothing and takes nothing away (the refill resumes from the latest reading)', () => {
    at.ms = 10_000;
    const l = new KeyedRateLimiter({ perMinute: 60, burst: 1 }, now);
    l.take('a');
    at.ms = 0;
    expect(l.take('a').allowed).toBe(false);
    at.ms = 1_000;
    expect(l.take('a').allowed).toBe(false);
    at.ms = 11_000;
    expect(l.take('a').allowed).toBe(true);
  });

  it('perMinute 0 allows everything and tracks nothing', () => {
    const l = new KeyedRateLimiter({ perMinute: 0, burst: 1 }, now);
    for (let i = 0; i < 100; i++) expect(l.take('a').allowed).toBe(true);
    expect(l.size).toBe(0);
  });

  it('tracks at most maxKeys identities, forgetting the least recently seen', () => {
    at.ms = 0;
    const l = new KeyedRateLimiter({ perMinute: 1, burst: 1 }, now, 3);
    for (const k of ['a', 'b', 'c']) l.take(k);
    expect(l.take('a').allowed).toBe(false); // a is now the most recent
    l.take('d'); // forgets b, the least recently seen
    expect(l.size).toBe(3);
    expect(l.take('c').allowed).toBe(false); // still tracked
    expect(l.take('b').allowed).toBe(true); // forgotten: a full bucket again
  });
});
