import type { ClientRequest, IncomingMessage } from 'node:http';

/**
 * The upstream timeouts of every in-flight request (a route's `timeouts.connect` and
 * `timeouts.idle`), kept by one coarse sweeper instead of timers per request: a request is
 * a Set entry, and a sweep every `periodMs` looks at each one's socket.
 * - no socket yet (queued for one of the route's pooled sockets): nothing runs, as with
 *   Node's socket timeouts;
 * - connecting: `connect` ms after the socket was first seen connecting;
 * - connected: `idle` ms without a byte read or written on the socket (the request's, the
 *   answer's, a slow stream's).
 * A timeout fires between its value and its value plus one period; the period is a quarter
 * of the shortest timeout tracked so far (10 ms – 1 s), so that is at most 25 % late.
 * Pure bookkeeping: what a timeout does is the caller's `onTimeout`.
 *
 * The in-flight entries form an intrusive doubly linked list, not a `Set`: a `Set` that
 * gains and loses an entry per request reallocates its hash table every few requests, and
 * each obsolete table keeps a link to its successor; once one of them has been promoted to
 * the old generation, the scavenger treats everything reachable from it as live (V8 keeps
 * old-to-new references of dead old objects until the next full GC), so every request's
 * objects survived and were promoted. Measured at saturation: ~1.5 MB promoted per
 * scavenge and ~12 % of leash's CPU in GC with the `Set`, ~23 KB with the list
 * (bench/RESULTS.md, "In-flight tracking and the GC"). Unlinking clears both links, so a
 * finished entry holds no other.
 */
export interface TimeoutEntry<T> {
  readonly req: ClientRequest;
  readonly connectMs: number;
  readonly idleMs: number;
  /** Handed to the tracker's onTimeout (one shared handler: no closure per request). */
  readonly payload: T;
  state: 'queued' | 'connecting' | 'open';
  /** When the state began, or the socket last moved a byte (performance.now()). */
  since: number;
  /** bytesRead + bytesWritten of the socket at the last sweep. */
  progress: number;
  /** The in-flight list's links (UpstreamTimeouts); both null once untracked. */
  prev: TimeoutEntry<T> | null;
  next: TimeoutEntry<T> | null;
}

const MIN_PERIOD_MS = 10;
const MAX_PERIOD_MS = 1_000;

/**
 * Pure: what a sweep at `now` makes of an entry — `timeout`, `done` (the answer has fully
 * arrived or the request is gone: no longer tracked; its socket may already serve another
 * request), or `wait` — updating its state and progress as the sweep sees them.
 */
export function sweepOne(e: TimeoutEntry<unknown>, now: number): 'wait' | 'timeout' | 'done' {
  const req = e.req as ClientRequest & { res?: IncomingMessage | null };
  if (req.destroyed || req.res?.complete) return 'done';
  const socket = req.socket;
  if (!socket) {
    e.state = 'queued';
    e.since = now;
    return 'wait';
  }
  if (socket.connecting) {
    if (e.state !== 'connecting') {
      e.state = 'connecting';
      e.since = now;
    }
    return now - e.since >= e.connectMs ? 'timeout' : 'wait';
  }
  const progress = socket.bytesRead + socket.bytesWritten;
  if (e.state !== 'open' || progress !== e.progress) {
    e.state = 'open';
    e.progress = progress;
    e.since = now;
    return 'wait';
  }
  return now - e.since >= e.idleMs ? 'timeout' : 'wait';
}

export class UpstreamTimeouts<T> {
  /** The most recently tracked entry; `next` leads to older ones. */
  private head: TimeoutEntry<T> | null = null;
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  private periodMs = MAX_PERIOD_MS;

  constructor(
    private readonly onTimeout: (payload: T, req: ClientRequest) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  track(req: ClientRequest, connectMs: number, idleMs: number, payload: T): TimeoutEntry<T> {
    const entry: TimeoutEntry<T> = { req, connectMs, idleMs, payload, state: 'queued', since: this.now(), progress: -1, prev: null, next: this.head };
    if (this.head !== null) this.head.prev = entry;
    this.head = entry;
    this.count++;
    const wanted = Math.max(MIN_PERIOD_MS, Math.min(MAX_PERIOD_MS, Math.floor(Math.min(connectMs, idleMs) / 4)));
    if (wanted < this.periodMs || this.timer === undefined) {
      this.periodMs = Math.min(this.periodMs, wanted);
      clearInterval(this.timer);
      this.timer = setInterval(() => this.sweep(), this.periodMs);
      this.timer.unref();
    }
    return entry;
  }

  /** Stop tracking an entry; a no-op if it is no longer tracked (swept, or untracked before). */
  untrack(entry: TimeoutEntry<T>): void {
    if (entry.prev === null && this.head !== entry) return;
    if (entry.prev !== null) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next !== null) entry.next.prev = entry.prev;
    entry.prev = null;
    entry.next = null;
    this.count--;
  }

  /**
   * The payload of the live entry for `req`, if any: a scan of the in-flight requests, for
   * rare events only (an unsolicited 101, server.ts) so that nothing is kept per request.
   */
  payloadOf(req: ClientRequest): T | undefined {
    for (let e = this.head; e !== null; e = e.next) if (e.req === req) return e.payload;
    return undefined;
  }

  /** Every live entry's payload and request, for rare events only (a revocation). */
  entries(): Array<[T, ClientRequest]> {
    const out: Array<[T, ClientRequest]> = [];
    for (let e = this.head; e !== null; e = e.next) out.push([e.payload, e.req]);
    return out;
  }

  get size(): number {
    return this.count;
  }

  sweep(): void {
    const now = this.now();
    let fired: TimeoutEntry<T>[] | undefined;
    for (let e = this.head; e !== null; ) {
      const next = e.next;
      const verdict = sweepOne(e, now);
      if (verdict !== 'wait') {
        this.untrack(e);
        if (verdict === 'timeout') (fired ??= []).push(e);
      }
      e = next;
    }
    // After the walk: an onTimeout that ends other requests (untracking them) cannot break it.
    if (fired) for (const e of fired) this.onTimeout(e.payload, e.req);
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (let e = this.head; e !== null; ) {
      const next = e.next;
      e.prev = null;
      e.next = null;
      e = next;
    }
    this.head = null;
    this.count = 0;
  }
}
