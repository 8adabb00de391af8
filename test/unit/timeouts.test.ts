import type { ClientRequest } from 'node:http';
import { describe, expect, it } from 'vitest';
import { sweepOne, UpstreamTimeouts, type TimeoutEntry } from '../../src/sidecar/proxy/timeouts.js';

/** The upstream-timeout sweeper's decisions (timeouts.ts), on requests in each state, with an injected clock. */
interface FakeReq {
  destroyed: boolean;
  res?: { complete: boolean };
  socket?: { connecting: boolean; bytesRead: number; bytesWritten: number };
}
const entry = (req: FakeReq, connectMs = 100, idleMs = 1_000): TimeoutEntry<string> => ({
  req: req as unknown as ClientRequest,
  connectMs,
  idleMs,
  payload: 'p',
  state: 'queued',
  since: 0,
  progress: -1,
});

describe('sweepOne', () => {
  it('a queued request (no socket yet) never times out; the connect clock starts when it is seen connecting', () => {
    const req: FakeReq = { destroyed: false };
    const e = entry(req);
    expect(sweepOne(e, 10_000)).toBe('wait');
    req.socket = { connecting: true, bytesRead: 0, bytesWritten: 0 };
    expect(sweepOne(e, 20_000)).toBe('wait');
    expect(sweepOne(e, 20_099)).toBe('wait');
    expect(sweepOne(e, 20_100)).toBe('timeout');
  });

  it('an open socket times out after idle ms without a byte either way; any byte restarts the clock', () => {
    const req: FakeReq = { destroyed: false, socket: { connecting: false, bytesRead: 10, bytesWritten: 5 } };
    const e = entry(req);
    expect(sweepOne(e, 0)).toBe('wait');
    expect(sweepOne(e, 999)).toBe('wait');
    req.socket!.bytesRead++;
    expect(sweepOne(e, 1_500)).toBe('wait');
    expect(sweepOne(e, 2_499)).toBe('wait');
    req.socket!.bytesWritten++;
    expect(sweepOne(e, 2_600)).toBe('wait');
    expect(sweepOne(e, 3_600)).toBe('timeout');
  });

  it('a request whose answer has fully arrived, or that is gone, is let go (its socket may serve another request)', () => {
    const socket = { connecting: false, bytesRead: 0, bytesWritten: 0 };
    expect(sweepOne(entry({ destroyed: false, socket, res: { complete: true } }), 1e9)).toBe('done');
    expect(sweepOne(entry({ destroyed: true, socket }), 1e9)).toBe('done');
    expect(sweepOne(entry({ destroyed: false, socket, res: { complete: false } }), 0)).toBe('wait');
  });
});

describe('UpstreamTimeouts', () => {
  it('fires onTimeout once per timed-out request, with its payload, and stops tracking it', () => {
    let now = 0;
    const fired: string[] = [];
    const t = new UpstreamTimeouts<string>((p) => fired.push(p), () => now);
    const open = { connecting: false, bytesRead: 0, bytesWritten: 0 };
    t.track({ destroyed: false, socket: open } as unknown as ClientRequest, 100, 500, 'slow');
    const kept = t.track({ destroyed: false, socket: { ...open } } as unknown as ClientRequest, 100, 500, 'untracked');
    t.untrack(kept);
    t.sweep();
    now = 499;
    t.sweep();
    expect(fired).toEqual([]);
    now = 500;
    t.sweep();
    now = 5_000;
    t.sweep();
    expect(fired).toEqual(['slow']);
    expect(t.size).toBe(0);
    t.close();
  });
});
