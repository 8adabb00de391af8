import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BEAT_MS, LoopStall, STALL_MS } from '../../src/core/loop-stall.js';

/** The stall detector the proxy asks per request (loop-stall.ts), on an injected clock. */
describe('LoopStall', () => {
  let now = 0;
  let stall: LoopStall;
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setImmediate'] });
    now = 0;
    stall = new LoopStall(() => now);
  });
  afterEach(() => {
    stall.close();
    vi.useRealTimers();
  });

  it('a loop that keeps beating is never stalled', () => {
    for (let i = 0; i < 20; i++) {
      now += BEAT_MS;
      vi.advanceTimersByTime(BEAT_MS);
      expect(stall.stalled(now)).toBe(false);
    }
  });

  it('stopped in the poll: stalled as soon as it resumes, before any timer runs', () => {
    now = STALL_MS + 1;
    expect(stall.stalled(now)).toBe(true);
    // The late beat then marks the turn; the turn after it is clear.
    vi.advanceTimersByTime(BEAT_MS);
    expect(stall.stalled(now)).toBe(true);
    vi.runOnlyPendingTimers(); // the setImmediate at the end of that turn
    expect(stall.stalled(now)).toBe(false);
  });

  it('stopped elsewhere: the late beat, run first on resume, keeps the rest of that turn stalled', () => {
    now = 10_000;
    vi.advanceTimersByTime(BEAT_MS); // the beat is fresh now …
    expect(stall.stalled(now)).toBe(true); // … yet the poll of this turn still waits a turn
    vi.runOnlyPendingTimers();
    expect(stall.stalled(now)).toBe(false);
  });

  it('stalledSince: a stall that ended after the mark, or one still being noticed, counts; an earlier one does not', () => {
    now = 10_000; // a stop, not yet noticed by a beat
    expect(stall.stalledSince(5_000, now)).toBe(true);
    vi.advanceTimersByTime(BEAT_MS); // noticed at 10 000
    expect(stall.stalledSince(5_000, now)).toBe(true);
    vi.runOnlyPendingTimers();
    for (let i = 0; i < 5; i++) {
      now += BEAT_MS;
      vi.advanceTimersByTime(BEAT_MS);
    }
    expect(stall.stalledSince(now - 100, now)).toBe(false);
    expect(stall.stalledSince(9_000, now)).toBe(true);
  });
});
