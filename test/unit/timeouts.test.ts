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
  prev: null,
  next: null,
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

  const open = () => ({ destroyed: false, socket: { connecting: false, bytesRead: 0, bytesWritten: 0 } }) as unknown as ClientRequest;

  it('untracks the newest, a middle and the oldest entry, each once: size, lookups and links stay right', () => {
    const t = new UpstreamTimeouts<string>(() => undefined, () => 0);
    const reqs = [open(), open(), open(), open()];
    const es = reqs.map((r, i) => t.track(r, 100, 500, `e${i}`));
    expect(t.size).toBe(4);
    t.untrack(es[3]!); // the newest (head)
    t.untrack(es[1]!); // a middle one
    t.untrack(es[1]!); // again: a no-op, the count does not drift
    t.untrack(es[0]!); // the oldest (tail)
    expect(t.size).toBe(1);
    expect(reqs.map((r) => t.payloadOf(r))).toEqual([undefined, undefined, 'e2', undefined]);
    // A finished entry links to nothing: it cannot keep other requests' objects alive.
    for (const e of [es[0]!, es[1]!, es[3]!]) expect([e.prev, e.next]).toEqual([null, null]);
    expect([es[2]!.prev, es[2]!.next]).toEqual([null, null]);
    const again = t.track(open(), 100, 500, 'e4');
    expect(again.next).toBe(es[2]);
    expect(t.size).toBe(2);
    t.close();
    expect(t.size).toBe(0);
    expect(t.payloadOf(reqs[2]!)).toBeUndefined();
  });

  it('a timeout handler that ends other requests (untracking them) during a sweep fires each timed-out one once', () => {
    let now = 0;
    const fired: string[] = [];
    const reqs = [open(), open(), open()];
    const entries: Array<TimeoutEntry<string>> = [];
    const t = new UpstreamTimeouts<string>((p) => {
      fired.push(p);
      // As a destroyed upstream request can end its neighbours' work: untrack all others.
      for (const e of entries) t.untrack(e);
    }, () => now);
    for (const [i, r] of reqs.entries()) entries.push(t.track(r, 100, 500, `r${i}`));
    t.sweep();
    now = 600;
    t.sweep();
    expect(fired.length).toBeGreaterThanOrEqual(1);
    expect(new Set(fired).size).toBe(fired.length);
    expect(t.size).toBe(0);
    now = 5_000;
    t.sweep();
    expect(new Set(fired).size).toBe(fired.length);
    t.close();
  });

  it('a request that finishes is let go at the next sweep even if never untracked', () => {
    const t = new UpstreamTimeouts<string>(() => undefined, () => 0);
    const req = open() as unknown as { res?: { complete: boolean } };
    t.track(req as unknown as ClientRequest, 100, 500, 'done');
    t.track(open(), 100, 500, 'live');
    req.res = { complete: true };
    t.sweep();
    expect(t.size).toBe(1);
    expect(t.payloadOf(req as unknown as ClientRequest)).toBeUndefined();
    t.close();
  });
});
