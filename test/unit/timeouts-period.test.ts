import type { ClientRequest } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sweepOne, UpstreamTimeouts, type TimeoutEntry } from '../../src/sidecar/proxy/timeouts.js';

/**
 * When the upstream-timeout sweeper (timeouts.ts) actually sweeps, under fake timers and
 * an injected clock: the period is a quarter of the shortest timeout tracked so far (10 ms
 * – 1 s), so a timeout fires at most a period late — whether the route's timeouts are long
 * (≥ 4 s: a 1 s period), a shorter one is tracked after a longer one, or requests keep
 * arriving faster than the period (each new request must not restart the sweep's interval).
 */
interface FakeSocket {
  connecting: boolean;
  bytesRead: number;
  bytesWritten: number;
}
/** A request on an open socket that moves no byte: it times out after its idle ms. */
const stalled = () => ({ destroyed: false, socket: { connecting: false, bytesRead: 0, bytesWritten: 0 } }) as unknown as ClientRequest;

let t: UpstreamTimeouts<string> | undefined;
let fired: Array<[string, number]>;
beforeEach(() => {
  vi.useFakeTimers();
  fired = [];
});
afterEach(() => {
  t?.close();
  t = undefined;
  vi.useRealTimers();
});

/** A sweeper on the fake clock, recording each timeout with the (fake) time it fired. */
const sweeper = () => (t = new UpstreamTimeouts<string>((p) => fired.push([p, Date.now()]), () => Date.now()));
const firedAt = (p: string) => fired.find(([q]) => q === p)?.[1];

describe('the sweep period', () => {
  it('with only long timeouts (≥ 4 s, a 1 s period), a stalled request still times out, at most a period late', () => {
    const start = Date.now();
    sweeper().track(stalled(), 8_000, 8_000, 'long');
    vi.advanceTimersByTime(20_000);
    const at = firedAt('long');
    expect(at).toBeDefined();
    // First seen open at the first sweep (≤ 1 s), then 8 s idle, then at most one more period.
    expect(at! - start).toBeGreaterThanOrEqual(8_000);
    expect(at! - start).toBeLessThanOrEqual(10_000);
  });

  it('a short timeout tracked after a long one shortens the period: it fires at most a quarter of itself late', () => {
    const start = Date.now();
    const s = sweeper();
    s.track(stalled(), 8_000, 8_000, 'long');
    vi.advanceTimersByTime(300);
    s.track(stalled(), 100, 100, 'short');
    vi.advanceTimersByTime(2_000);
    const at = firedAt('short');
    expect(at).toBeDefined();
    // Tracked at 300; seen open at the next 25 ms sweep, idle 100 ms, at most one period more.
    expect(at! - start).toBeLessThanOrEqual(300 + 25 + 100 + 25);
  });

  it('requests tracked more often than the period do not hold the sweep off', () => {
    const start = Date.now();
    const s = sweeper();
    s.track(stalled(), 400, 400, 'stalled'); // a 100 ms period
    // A new request every 50 ms for 2 s, with the same and with longer timeouts.
    for (let i = 0; i < 40; i++) {
      vi.advanceTimersByTime(50);
      s.track(stalled(), i % 2 === 0 ? 400 : 4_000, i % 2 === 0 ? 400 : 4_000, `r${i}`);
    }
    const at = firedAt('stalled');
    expect(at).toBeDefined();
    expect(at! - start).toBeLessThanOrEqual(100 + 400 + 100);
  });
});

describe('progress on an open socket', () => {
  it('as many bytes read as written since the last sweep is progress: the idle clock restarts', () => {
    const socket: FakeSocket = { connecting: false, bytesRead: 10, bytesWritten: 10 };
    const e: TimeoutEntry<string> = { req: { destroyed: false, socket } as unknown as ClientRequest, connectMs: 100, idleMs: 1_000, payload: 'p', state: 'queued', since: 0, progress: -1, prev: null, next: null };
    expect(sweepOne(e, 0)).toBe('wait');
    socket.bytesRead += 5;
    socket.bytesWritten += 5; // an echo: as many bytes each way
    expect(sweepOne(e, 900)).toBe('wait');
    expect(sweepOne(e, 1_800)).toBe('wait');
    expect(sweepOne(e, 1_900)).toBe('timeout');
  });
});

describe('entries', () => {
  it('lists exactly the live entries, newest first, with their payloads and requests', () => {
    const s = new UpstreamTimeouts<string>(() => undefined, () => 0);
    expect(s.entries()).toEqual([]);
    const a = stalled();
    const b = stalled();
    const c = stalled();
    s.track(a, 100, 500, 'a');
    const eb = s.track(b, 100, 500, 'b');
    s.track(c, 100, 500, 'c');
    s.untrack(eb);
    const listed = s.entries();
    expect(listed.map(([p]) => p)).toEqual(['c', 'a']);
    expect(listed[0]![1]).toBe(c);
    expect(listed[1]![1]).toBe(a);
    s.close();
    expect(s.entries()).toEqual([]);
  });
});
