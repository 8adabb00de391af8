/**
 * Whether the event loop has just come back from a stall: the process was stopped
 * (SIGSTOP, a frozen cgroup, a suspended VM, a debugger) or starved of CPU. While it was
 * away the kernel queued whatever arrived; the first poll after it hands all of it over at
 * once, in the order each socket first became readable, not the order of the bytes. An
 * agent request queued before a revocation message (or a connection that had sent one byte
 * before it and the rest after) is then read and forwarded with the revoked credential
 * before the revocation, sitting in the same poll, is read: measured, a request went out
 * 0.5 s after its lease was revoked for a 0.5 s pause, and it would for any pause.
 *
 * The proxy asks `stalled(now)` per request: true while the last beat is older than
 * STALL_MS (the poll that ends a stop runs before any timer), or until the end of the loop
 * turn in which a late beat noticed one (a stop that ended on the timer phase). Such a
 * request waits one turn (setImmediate, after the whole poll): every revocation that had
 * reached leash's socket is applied first. A heartbeat every BEAT_MS, unref'd.
 */
export const BEAT_MS = 200;
export const STALL_MS = 500;

export class LoopStall {
  /** Monotonic ms of the last beat. */
  private beat: number;
  /** A late beat was seen in this loop turn. */
  private resumed = false;
  /** Monotonic ms of the last late beat (the end of the last stall seen). */
  private lastStallAt = -Infinity;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.beat = now();
    this.timer = setInterval(() => {
      const t = this.now();
      if (t - this.beat > STALL_MS) this.lastStallAt = t;
      if (t - this.beat > STALL_MS && !this.resumed) {
        this.resumed = true;
        setImmediate(() => {
          this.resumed = false;
        });
      }
      this.beat = t;
    }, BEAT_MS);
    this.timer.unref();
  }

  /** `now` is the caller's monotonic ms (a request's start time). */
  stalled(now: number): boolean {
    return this.resumed || now - this.beat > STALL_MS;
  }

  /**
   * Whether the loop has stalled since `sinceMs` (or is only now coming back from one): a
   * deadline that expired meanwhile says nothing about the peer, whose answer may be in
   * the socket, unread (the bus heartbeat, bus/redis.ts).
   */
  stalledSince(sinceMs: number, now: number): boolean {
    return now - this.beat > STALL_MS || this.lastStallAt >= sinceMs;
  }

  close(): void {
    clearInterval(this.timer);
  }
}

let shared: LoopStall | undefined;
/** One detector for the process (its beat is unref'd and never stopped): the proxy's and the bus heartbeat's. */
export function sharedLoopStall(): LoopStall {
  return (shared ??= new LoopStall());
}
