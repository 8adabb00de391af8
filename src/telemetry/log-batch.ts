import { writeSync } from 'node:fs';

/**
 * Batched, synchronous log writes to a file descriptor (stdout), for pino.
 *
 * Lines are buffered until ~minBytes are waiting or maxDelayMs has passed since the first
 * buffered line, then written with one write(2) on the event loop. Why not pino's async
 * destination (sonic-boom, sync: false): each async write is a threadpool hand-off and two
 * extra event-loop wake-ups (issue 11: most of the proxy's extra syscalls per request), and
 * at exit a write still in flight on the threadpool is lost or torn — its rest is skipped
 * by flushSync (measured: 81 of 5,010 lines missing after an uncaught exception with
 * stdout a pipe; with sonic-boom's minLength batching, a torn line too). Here the buffer is always exactly what is unwritten, so
 * the exit flush is complete and in order. Node writes its own stdout to files and pipes
 * synchronously on Linux too.
 *
 * Never throws into the caller: EAGAIN (a non-blocking pipe that is full) keeps the lines
 * and retries on a timer; any other error (EPIPE: the reader is gone) stops logging.
 */
export interface LogBatch {
  minBytes: number;
  maxDelayMs: number;
  /**
   * Most characters held while the reader is stalled (EAGAIN). Every proxied request
   * logs a line, so without a bound an agent's traffic would grow the heap for as long as
   * the log reader is stuck; past it lines are dropped, counted, and the count is logged
   * once writing resumes.
   */
  maxBuffered?: number;
}

const MAX_BUFFERED = 8 * 1024 * 1024;

/** Lines dropped by every destination of this process since it started. */
let droppedTotal = 0;
/** Log lines dropped since start because stdout was not being read: `leash_log_lines_dropped_total`. */
export const droppedLogLines = (): number => droppedTotal;

export const LOG_BATCH: LogBatch = { minBytes: 4096, maxDelayMs: 100, maxBuffered: MAX_BUFFERED };

/** How long the exit flush waits for a full pipe to drain before giving up. */
const EXIT_FLUSH_LIMIT_MS = 5_000;

export class BatchedFdDestination {
  /** Whole lines not yet handed to write(2). */
  private text = '';
  /** The unwritten rest of a partial write, which must go out before `text`. */
  private rest: Buffer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private waiters: Array<(err?: Error) => void> = [];
  private dead = false;
  /** The last write hit EAGAIN: a retry is armed; lines wait for it (no write(2) per line). */
  private stalled = false;
  /** Lines dropped since the stall began because the buffer was full. */
  private dropped = 0;

  constructor(
    private readonly fd: number,
    private readonly batch: LogBatch = LOG_BATCH,
    /** write(2) of a string (UTF-8) or bytes; injectable so tests can make it fail (EAGAIN, EPIPE) or write part. */
    private readonly writeFd: (fd: number, data: string | Buffer) => number = (fd, data) =>
      // Two calls because writeSync's string and bytes forms are separate overloads.
      typeof data === 'string' ? writeSync(fd, data) : writeSync(fd, data),
  ) {
    live.add(this);
    installExitHook();
  }

  write(line: string): boolean {
    if (this.dead) return true;
    if (this.stalled) {
      if (this.pending() + line.length > (this.batch.maxBuffered ?? MAX_BUFFERED)) {
        this.dropped++;
        droppedTotal++;
      } else this.text += line;
      return true;
    }
    this.text += line;
    // String length (UTF-16 units) as the size: close enough to bytes for a batch bound.
    if (this.text.length >= this.batch.minBytes) this.writeOut();
    else this.arm(this.batch.maxDelayMs);
    return true;
  }

  /** Writes everything now (pino's logger.flush(cb)); calls back once all is written, or logging has stopped. */
  flush(cb?: (err?: Error) => void): void {
    if (cb) this.waiters.push(cb);
    this.writeOut();
  }

  /** Writes everything before returning, waiting out a full pipe for up to 5 s: the exit path. */
  flushSync(): void {
    const until = Date.now() + EXIT_FLUSH_LIMIT_MS;
    while (!this.dead && this.pending() && !this.writeOut() && Date.now() < until) {
      Atomics.wait(SLEEP, 0, 0, 5);
    }
  }

  /** Bytes or characters still to write (for tests and the exit hook). */
  pending(): number {
    return (this.rest?.length ?? 0) + this.text.length;
  }

  private arm(ms: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writeOut();
    }, ms);
    // Logging never keeps the process alive; exit is covered by the exit hook.
    this.timer.unref();
  }

  /** Writes what is buffered; true when nothing is left (or logging stopped). */
  private writeOut(): boolean {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    try {
      for (;;) {
        if (this.rest === undefined) {
          if (this.text === '') break;
          // The batch goes to write(2) as a string: Node encodes it straight into its own
          // buffer (a Buffer.from first cost ~1.2k instructions per request, bench/RESULTS.md).
          // `text` is cleared only once written: a throw (EAGAIN) leaves it all for the retry.
          const text = this.text;
          const n = this.writeFd(this.fd, text);
          this.text = '';
          // A partial write (a pipe that filled up): its unwritten bytes go first next time.
          if (n < Buffer.byteLength(text, 'utf8')) this.rest = Buffer.from(text, 'utf8').subarray(n);
          continue;
        }
        const n = this.writeFd(this.fd, this.rest);
        this.rest = n >= this.rest.length ? undefined : this.rest.subarray(n);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        // The reader is behind: keep what fits and try again shortly.
        this.stalled = true;
        this.arm(10);
        return false;
      }
      this.stop(err as Error);
      return true;
    }
    this.stalled = false;
    if (this.dropped > 0) {
      const dropped = this.dropped;
      this.dropped = 0;
      // In the logger's JSON shape, so log pipelines parse it like any other line.
      this.text = `${JSON.stringify({ level: 'warn', time: new Date().toISOString(), pid: process.pid, name: 'leash', msg: 'log lines dropped: stdout was not being read', dropped })}\n`;
      return this.writeOut();
    }
    this.settle();
    return true;
  }

  private stop(err: Error): void {
    this.dead = true;
    this.text = '';
    this.rest = undefined;
    live.delete(this);
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w(err);
  }

  private settle(): void {
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w();
  }
}

const SLEEP = new Int32Array(new SharedArrayBuffer(4));
const live = new Set<BatchedFdDestination>();
let hooked = false;

/**
 * process.exit, a natural exit and an uncaught exception all emit 'exit' (synchronous code
 * only from here on): whatever is buffered is written then. Only an uncatchable end
 * (SIGKILL, a signal without a handler) loses the last ≤ maxDelayMs / minBytes of lines.
 */
function installExitHook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const d of live) d.flushSync();
  });
}
