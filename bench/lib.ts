import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

/**
 * Benchmark plumbing: a raw keep-alive HTTP/1.1 client (so the load generator's own
 * overhead is small and identical for every target), an open-loop paced runner,
 * /proc readers and child-process helpers. Nothing here is used by leash itself.
 */

export const nowNs = (): bigint => process.hrtime.bigint();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RawResponse {
  status: number;
  /** Request written → response complete. */
  latencyUs: number;
  /** Request written → end of response headers. */
  headersUs: number;
  /** Request written → first SSE event terminator ("\n\n") in the body, if any. */
  firstEventUs: number | undefined;
  /** process.hrtime.bigint() when the first event arrived (CLOCK_MONOTONIC, comparable across processes). */
  firstEventAtNs: bigint | undefined;
  /**
   * First SSE event read → last byte read: how long the rest of the stream took to come
   * through, without the request's trip (that is firstEventUs).
   */
  afterFirstEventUs: number | undefined;
  body: Buffer;
}

interface Pending {
  start: bigint;
  headerEnd: number;
  headersAt: bigint;
  status: number;
  length: number; // -1 chunked
  firstEventAt: bigint | undefined;
  /** The body's pieces as read (concatenated once, at the end), their length, and its last bytes. */
  parts: Buffer[];
  bodyLength: number;
  tail: Buffer;
  onEvent: (() => void) | undefined;
  resolve: (r: RawResponse) => void;
  reject: (e: Error) => void;
}

const CRLF2 = Buffer.from('\r\n\r\n');
const LF2 = Buffer.from('\n\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const END_CHUNKED = Buffer.from('\r\n0\r\n\r\n');
const EMPTY = Buffer.alloc(0);
/** How many of the body's last bytes are kept to find a terminator split across reads. */
const TAIL = END_CHUNKED.length - 1;
const usSince = (t0: bigint, t1: bigint): number => Number(t1 - t0) / 1000;

/** Marks a RawConn request error as the keep-alive race (see `fail` in RawConn). */
export const STALE = Symbol('stale keep-alive connection');
export const isStale = (err: unknown): boolean => typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[STALE] === true;

/** One keep-alive connection, one request at a time (no pipelining). */
export class RawConn {
  private buf: Buffer = Buffer.alloc(0);
  private cur: Pending | undefined;
  /** Responses completed on this connection. */
  private served = 0;
  closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const fail = (err?: Error) => {
      this.closed = true;
      const p = this.cur;
      this.cur = undefined;
      if (p === undefined) return;
      // A kept-alive connection the server closed as the request went out (its idle
      // timeout and the request crossed): nothing of an answer came back, so the request
      // may be sent again on a new connection (STALE).
      const stale = this.served > 0 && p.status === 0 && this.buf.length === 0;
      p.reject(Object.assign(err ?? new Error('connection closed'), stale ? { [STALE]: true } : {}));
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  static open(host: string, port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
      s.once('error', reject);
    });
  }

  /** The same over TLS (keep-alive HTTPS; mTLS when `tls` carries a cert and key). */
  static openTls(host: string, port: number, tls: ConnectionOptions): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ host, port, ...tls });
      s.once('secureConnect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
      s.once('error', reject);
    });
  }

  request(payload: Buffer, onEvent?: () => void): Promise<RawResponse> {
    if (this.closed) return Promise.reject(new Error('connection closed'));
    if (this.cur) return Promise.reject(new Error('request already in flight'));
    return new Promise((resolve, reject) => {
      this.cur = { start: nowNs(), headerEnd: -1, headersAt: 0n, status: 0, length: 0, firstEventAt: undefined, parts: [], bodyLength: 0, tail: EMPTY, onEvent, resolve, reject };
      this.socket.write(payload);
    });
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  /**
   * Linear in the response's size: each read is looked at once (with the few bytes before
   * it, for a terminator split across reads) and the body is concatenated once at its end.
   * (Concatenating and rescanning the whole body on every read made a 500-event stream cost
   * the client time quadratic in its reads, counted in the figure of whichever proxy
   * delivered it in more pieces.)
   */
  private onData(chunk: Buffer): void {
    const p = this.cur;
    if (!p) {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      return;
    }
    const t = nowNs();
    let fresh = chunk;
    if (p.headerEnd < 0) {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      const idx = this.buf.indexOf(CRLF2);
      if (idx < 0) return;
      const head = this.buf.toString('latin1', 0, idx);
      p.status = Number(head.slice(9, 12));
      p.headerEnd = idx + 4;
      p.headersAt = t;
      const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
      p.length = cl ? Number(cl[1]) : /\r\ntransfer-encoding:[ \t]*chunked/i.test(head) ? -1 : 0;
      fresh = this.buf.subarray(idx + 4);
      this.buf = EMPTY;
    }
    // The new bytes with the body's last few before them: a terminator may straddle two reads.
    const window = p.tail.length === 0 ? fresh : Buffer.concat([p.tail, fresh]);
    const base = p.bodyLength - p.tail.length; // where `window` starts in the body
    if (fresh.length > 0) {
      p.parts.push(fresh);
      p.bodyLength += fresh.length;
    }
    if (p.firstEventAt === undefined && window.indexOf(LF2) >= 0) {
      p.firstEventAt = t;
      p.onEvent?.();
    }
    let end = -1; // the body's length, once complete
    if (p.length >= 0) {
      if (p.bodyLength >= p.length) end = p.length;
    } else if (base === 0 && window.subarray(0, 5).equals(LAST_CHUNK)) end = 5;
    else {
      const i = window.indexOf(END_CHUNKED);
      if (i >= 0) end = base + i + END_CHUNKED.length;
    }
    p.tail = window.subarray(Math.max(0, window.length - TAIL));
    if (end < 0) return;
    const all = p.parts.length === 1 ? p.parts[0]! : Buffer.concat(p.parts, p.bodyLength);
    const res: RawResponse = {
      status: p.status,
      latencyUs: usSince(p.start, t),
      headersUs: usSince(p.start, p.headersAt),
      firstEventUs: p.firstEventAt === undefined ? undefined : usSince(p.start, p.firstEventAt),
      firstEventAtNs: p.firstEventAt,
      afterFirstEventUs: p.firstEventAt === undefined ? undefined : usSince(p.firstEventAt, t),
      body: all.subarray(0, end),
    };
    // Bytes past the answer (none without pipelining) wait for the next request.
    this.buf = all.subarray(end);
    this.cur = undefined;
    this.served++;
    p.resolve(res);
  }
}

export function httpGet(host: string, port: number, path: string, headers: Record<string, string> = {}): Buffer {
  let text = `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n`;
  for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** A single request on a fresh connection (control calls). */
export async function once(host: string, port: number, path: string): Promise<RawResponse> {
  const c = await RawConn.open(host, port);
  try {
    return await c.request(httpGet(host, port, path));
  } finally {
    c.destroy();
  }
}

export interface Stats {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function stats(values: ArrayLike<number>): Stats {
  const a = Float64Array.from(values).sort();
  const q = (p: number) => (a.length ? a[Math.min(a.length - 1, Math.max(0, Math.ceil(p * a.length) - 1))]! : NaN);
  let sum = 0;
  for (const v of a) sum += v;
  return { n: a.length, mean: a.length ? sum / a.length : NaN, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: a.length ? a[a.length - 1]! : NaN };
}

/** Median of a list (mean of the middle two for an even count); NaN when empty. */
export function median(values: number[]): number {
  const a = values.filter((v) => !Number.isNaN(v)).sort((x, y) => x - y);
  if (a.length === 0) return NaN;
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

export interface PacedResult {
  sent: number;
  ok: number;
  errors: number;
  /**
   * Idle connections the server had closed (its keep-alive timeout; the pool is LIFO, so
   * connections at its bottom can sit idle for seconds at a low rate), found before a
   * request was written on them: replaced, not counted as errors.
   */
  reopened: number;
  /** Sends that found no free connection and waited for one (open-loop schedule slipped). */
  queued: number;
  achievedRate: number;
  latency: Stats;
}

/**
 * Open-loop load at a fixed rate over `connections` keep-alive connections. Requests are
 * released on a 1 ms timer according to the elapsed time, so the schedule does not drift;
 * latency is measured from the moment a request is written to its last byte.
 */
export async function paced(o: { host: string; port: number; payload: Buffer; rate: number; durationMs: number; connections: number }): Promise<PacedResult> {
  const free: RawConn[] = [];
  for (let i = 0; i < o.connections; i++) free.push(await RawConn.open(o.host, o.port));
  const all = [...free];
  const lat: number[] = [];
  let scheduled = 0;
  let waiting = 0;
  let queued = 0;
  let inflight = 0;
  let ok = 0;
  let errors = 0;
  let reopened = 0;
  let stopped = false;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => (done = r));
  const t0 = performance.now();

  const send = (c: RawConn): void => {
    inflight++;
    attempt(c);
  };
  const attempt = (c: RawConn): void => {
    c.request(o.payload).then(
      (r) => {
        inflight--;
        lat.push(r.latencyUs);
        if (r.status === 200) ok++;
        else errors++;
        release(c);
      },
      (err: unknown) => {
        if (isStale(err) && !ended) {
          // The server closed the idle connection as the request went out: sent again on a
          // new one (as browsers and Node's own agent-less retries do), not an error.
          reopened++;
          RawConn.open(o.host, o.port).then(
            (n) => {
              all.push(n);
              attempt(n);
            },
            () => {
              inflight--;
              errors++;
              if (stopped && inflight === 0) done();
            },
          );
          return;
        }
        inflight--;
        errors++;
        replace();
      },
    );
  };
  let ended = false;
  /** A new connection in place of a closed one, into the pool once open. */
  const replace = (): void => {
    RawConn.open(o.host, o.port).then(
      (n) => {
        if (ended) return n.destroy();
        all.push(n);
        release(n);
      },
      () => {
        if (stopped && inflight === 0) done();
      },
    );
  };
  /** A free connection the server has not closed, or undefined (closed ones are replaced). */
  const take = (): RawConn | undefined => {
    let c = free.pop();
    while (c?.closed) {
      reopened++;
      replace();
      c = free.pop();
    }
    return c;
  };
  const release = (c: RawConn): void => {
    if (c.closed) {
      reopened++;
      return replace();
    }
    if (waiting > 0) {
      waiting--;
      send(c);
    } else {
      free.push(c);
      if (stopped && inflight === 0) done();
    }
  };
  const tick = (): void => {
    const elapsed = performance.now() - t0;
    const due = Math.floor((Math.min(elapsed, o.durationMs) * o.rate) / 1000);
    while (scheduled < due) {
      scheduled++;
      const c = take();
      if (c) send(c);
      else {
        waiting++;
        queued++;
      }
    }
    if (elapsed < o.durationMs) setTimeout(tick, 1);
    else {
      stopped = true;
      if (inflight === 0 && waiting === 0) done();
    }
  };
  tick();
  await finished;
  const wall = performance.now() - t0;
  ended = true;
  for (const c of all) c.destroy();
  return { sent: scheduled, ok, errors, reopened, queued, achievedRate: (ok + errors) / (wall / 1000), latency: stats(lat) };
}

// ---- /proc ----

const CLK_TCK = 100; // USER_HZ on Linux; utime/stime are in these ticks.

/** utime + stime of a process, in µs. */
export function cpuUs(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}

/**
 * CPU time of every live thread of `pid` in µs, from the scheduler's own run-time account
 * (`/proc/PID/task/TID/schedstat`, nanoseconds) rather than the 10 ms ticks `cpuUs` reads: a
 * 1 s slice is ~100 ticks, so tick sampling alone spreads a slice's reading by a few per
 * cent. A thread that exits between two readings takes its time with it (node's threads
 * live as long as the process).
 */
export function cpuUsPrecise(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return ns / 1000;
}

/**
 * VmRSS and VmHWM in MB, and VmRSS split into RssAnon (heap, stacks: the process's own) and
 * RssFile (mapped files, mostly the node binary: shared, and shrinks when the kernel reclaims).
 */
export function memory(pid: number): { rssMB: number; hwmMB: number; anonMB: number; fileMB: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024, anonMB: kb('RssAnon') / 1024, fileMB: kb('RssFile') / 1024 };
}

/**
 * Resets a process's VmHWM to its current RSS (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0),
 * so a later VmHWM is the peak since now, not the start-up's. False if the kernel refuses.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

// ---- processes ----

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Spawns `node <args>` and resolves with the child and the first JSON line it prints.
 * With `cpus` (a taskset list such as "1"), node runs under `taskset -c <cpus>`.
 */
export function spawnNodeWithHello<T>(args: string[], env: NodeJS.ProcessEnv = process.env, cpus?: string): Promise<{ child: ChildProcess; hello: T }> {
  return new Promise((resolve, reject) => {
    const child = spawnNode(args, env, ['ignore', 'pipe', 'inherit'], cpus);
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => {
      resolve({ child, hello: JSON.parse(line) as T });
      child.stdout!.resume();
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code} before it was ready`)));
    child.once('error', reject);
  });
}

/**
 * `node <args>`; with `cpus`, under `taskset -c <cpus>`: taskset sets the mask and execs
 * node, so the child's pid is node's own and every thread node starts inherits the mask.
 */
export function spawnNode(args: string[], env: NodeJS.ProcessEnv, stdio: StdioOptions, cpus?: string): ChildProcess {
  if (cpus !== undefined) return spawn('taskset', ['-c', cpus, process.execPath, ...args], { env, stdio });
  return spawn(process.execPath, args, { env, stdio });
}

/**
 * A private `redis-server` (nothing kept on disk) on a free port of `host`, working in `dir`;
 * with `cpus`, under `taskset -c <cpus>`. Resolves when it accepts connections (5 s at most).
 */
export async function startRedisServer(host: string, dir: string, cpus?: string): Promise<{ child: ChildProcess; url: string; pid: number }> {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'];
  const stdio: StdioOptions = ['ignore', 'ignore', 'inherit'];
  const child = cpus !== undefined ? spawn('taskset', ['-c', cpus, 'redis-server', ...args], { stdio }) : spawn('redis-server', args, { stdio });
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      const c = await RawConn.open(host, port);
      c.destroy();
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error('redis-server did not start');
      }
      await sleep(50);
    }
  }
  return { child, url: `redis://${host}:${port}`, pid: child.pid! };
}

/** True when `taskset` runs and the machine has at least `cores` CPUs. */
export function canPin(cores = 2): boolean {
  return spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0 && cpus().length >= cores;
}

/** Pins every thread of this process (`taskset -a -pc`); threads started later inherit the mask. */
export function pinSelf(list: string): boolean {
  return spawnSync('taskset', ['-a', '-pc', list, String(process.pid)], { stdio: 'ignore' }).status === 0;
}

/** Cpus_allowed_list of a process, as /proc reports it (proof of the pinning). */
export function allowedCpus(pid: number): string {
  return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?';
}

export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000): Promise<number | null> {
  // A child killed by a signal has exitCode null and signalCode set: it is gone all the same.
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.kill(signal);
  });
}

/** Polls GET path until it answers 200. */
export async function waitReady(host: string, port: number, path: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await once(host, port, path);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${host}:${port}${path} not ready after ${timeoutMs} ms`);
    await sleep(50);
  }
}

// ---- other load on the machine ----

/** Busy CPU of the whole machine (all cores), in µs, from /proc/stat. */
export function machineBusyUs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
  return (busy * 1e6) / CLK_TCK;
}

/**
 * CPU used on the machine by processes other than `ours` (and this one) over a phase,
 * in cores: the benchmark shares the machine, and a busy neighbour skews every figure.
 */
export function foreignMeter(ours: () => number[]): () => number {
  const sum = () => ours().reduce((a, pid) => a + safeCpu(pid), cpuUs(process.pid));
  const [m0, o0, w0] = [machineBusyUs(), sum(), performance.now()];
  return () => {
    const [m1, o1, w1] = [machineBusyUs(), sum(), performance.now()];
    return Math.max(0, m1 - m0 - (o1 - o0)) / ((w1 - w0) * 1000);
  };
}

/** Busy CPU of one core, in µs, from its `cpuN` line in /proc/stat. */
export function coreBusyUs(core: number): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${core} `));
  if (!line) return NaN;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return ((f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) * 1e6) / CLK_TCK;
}

/**
 * CPU used on one core by anything but `ours` (the processes pinned to it), in cores, over
 * a phase: with the proxy pinned alone on a core, the load that shared that core with it.
 * Like foreignMeter it counts steal and kernel softirq time too (no process owns those).
 */
export function coreForeignMeter(core: number, ours: () => number[]): () => number {
  const sum = () => ours().reduce((a, pid) => a + safeCpu(pid), 0);
  const [c0, o0, w0] = [coreBusyUs(core), sum(), performance.now()];
  return () => {
    const [c1, o1, w1] = [coreBusyUs(core), sum(), performance.now()];
    return Math.max(0, c1 - c0 - (o1 - o0)) / ((w1 - w0) * 1000);
  };
}

function safeCpu(pid: number): number {
  try {
    return cpuUs(pid);
  } catch {
    return 0;
  }
}

/** Waits (up to `maxMs`) until other processes use less than `cores` for two 1 s windows in a row. */
let waitBudgetMs = 15_000;
/** Whole seconds of quiet-waiting left for this run (the run must stay short). */
export const waitBudgetLeft = (): number => waitBudgetMs;
export async function waitQuiet(ours: () => number[], cores: number, maxMs: number, log: (m: string) => void): Promise<number> {
  const started = Date.now();
  const deadline = started + Math.min(maxMs, waitBudgetMs);
  try {
    return await waitQuietUntil(ours, cores, deadline, log);
  } finally {
    waitBudgetMs = Math.max(0, waitBudgetMs - (Date.now() - started));
  }
}

async function waitQuietUntil(ours: () => number[], cores: number, deadline: number, log: (m: string) => void): Promise<number> {
  let calm = 0;
  let last = 0;
  while (Date.now() < deadline) {
    const m = foreignMeter(ours);
    await sleep(1_000);
    last = m();
    calm = last < cores ? calm + 1 : 0;
    if (calm >= 2) return last;
    if (calm === 0) log(`machine busy: other processes use ${last.toFixed(2)} cores; waiting for quiet`);
  }
  if (calm === 0) log(`machine still busy (${last.toFixed(2)} cores used by others); measuring anyway — figures are skewed`);
  return last;
}

/**
 * The benchmarks' leash sidecar config (YAML): one route `bench` to the upstream, header
 * injection of `BENCH_KEY`, the given allow rules. One definition, so every bench
 * measures the same proxy configuration.
 */
export function benchSidecarYaml(o: {
  host: string;
  port: number;
  admin: number;
  upstreamPort: number;
  level?: string;
  allow?: readonly string[];
  extra?: readonly string[];
}): string {
  return [
    `listen: "${o.host}:${o.port}"`,
    `admin: "${o.host}:${o.admin}"`,
    'shutdown: { grace: 1s }',
    ...(o.level ? [`log: { level: ${o.level} }`] : []),
    'routes:',
    '  bench:',
    `    upstream: "http://${o.host}:${o.upstreamPort}"`,
    '    credential: { env: BENCH_KEY }',
    '    inject: { header: authorization, format: "Bearer {{credential}}" }',
    `    allow: [${(o.allow ?? ['GET /v1/**', 'POST /v1/**']).map((r) => `"${r}"`).join(', ')}]`,
    ...(o.extra ?? []),
    '',
  ].join('\n');
}

// ---- what the benches run: the shipped file, with the image's node flags ----

/**
 * The command line as shipped, relative to the package root: the bundle `npm run build`
 * writes (rolldown.config.mjs), the package's `bin` and the Dockerfile's ENTRYPOINT script
 * (test/unit/bench-flags.test.ts). The benches measure this file by default; `--leash-dist=DIR`
 * names another directory holding a cli.js (another build's dist/leash, or a dist/src).
 */
export const SHIPPED_CLI = 'dist/leash/cli.js';

/**
 * The node flags the leash image runs with (Dockerfile ENTRYPOINT: `node <these> dist/leash/cli.js`).
 * The one place the benches take them from; test/unit/bench-flags.test.ts checks that the
 * Dockerfile uses exactly these, so the bench measures leash as deployed.
 */
export const IMAGE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/**
 * The node flags for leash from `--leash-node-flags="--a --b"` (split on whitespace; the last
 * occurrence wins): IMAGE_NODE_FLAGS when absent, none for `--leash-node-flags=` (empty).
 * Throws on a value that is not a flag (a word not starting with `-`) or on the option
 * without `=`, so a typo cannot silently run leash with other arguments.
 */
export function leashNodeFlags(args: readonly string[]): string[] {
  if (args.includes('--leash-node-flags')) throw new Error('--leash-node-flags needs a value: --leash-node-flags="--a --b" (or --leash-node-flags= for none)');
  const given = args.filter((a) => a.startsWith('--leash-node-flags=')).at(-1);
  if (given === undefined) return [...IMAGE_NODE_FLAGS];
  const flags = given.slice('--leash-node-flags='.length).split(/\s+/).filter((f) => f !== '');
  const bad = flags.find((f) => !f.startsWith('-'));
  if (bad !== undefined) throw new Error(`--leash-node-flags: "${bad}" is not a node flag (each word must start with -)`);
  return flags;
}

/** How a list of node flags is printed: the flags, or "(none)". */
export const fmtNodeFlags = (flags: readonly string[]): string => (flags.length ? flags.join(' ') : '(none)');

// ---- saturation in interleaved slices (gc-state.ts, saturation.ts) ----

/** A proxy measured in interleaved slices: its CPU µs per request, one value per cycle. */
export interface SlicedProxy {
  name: string;
  child: ChildProcess;
  port: number;
  perReq: number[];
}

/** What one slice of load reports (autocannon's result, the fields used). */
export interface SliceLoad {
  errors: number;
  timeouts: number;
  non2xx: number;
  requests: { total: number };
}

/**
 * A warm-up of `warmS` seconds per proxy, then `cycles` cycles of one 1 s slice per proxy
 * (order reversed every cycle, so no proxy always follows another): each slice's CPU per
 * request (Δ utime+stime of the proxy ÷ requests) is pushed to the proxy's `perReq`. A slice
 * with errors, timeouts or non-2xx answers throws.
 */
export async function interleavedSlices(proxies: SlicedProxy[], o: { warmS: number; cycles: number; load: (p: SlicedProxy, seconds: number) => Promise<SliceLoad> }): Promise<void> {
  for (const p of proxies) await o.load(p, o.warmS);
  for (let c = 0; c < o.cycles; c++) {
    for (const p of c % 2 === 0 ? proxies : [...proxies].reverse()) {
      const before = cpuUsPrecise(p.child.pid!);
      const r = await o.load(p, 1);
      if (r.errors + r.timeouts + r.non2xx > 0) throw new Error(`${p.name}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx`);
      p.perReq.push((cpuUsPrecise(p.child.pid!) - before) / r.requests.total);
    }
  }
}
