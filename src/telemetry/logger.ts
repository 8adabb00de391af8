import pino, { type DestinationStream, type Logger } from 'pino';
import type { z } from 'zod';
import type { logLevel } from '../config/common.js';
import { BatchedFdDestination } from './log-batch.js';

export type { Logger } from 'pino';
export type LogLevel = z.infer<typeof logLevel>;

/**
 * pino JSON on stdout. The first line of defence is that no code logs a header or a
 * credential value (credentials are named by fingerprint); `redact` is the second, for
 * any field with a name that usually carries one.
 */
// Top-level paths only: wildcard paths are evaluated on every line and cost ~13 µs per
// audit line on the request path (bench/RESULTS.md), while leash's own fields never nest
// a secret-bearing name.
const REDACT = ['headers', 'authorization', 'secret', 'value', 'token', 'password', 'cookie'];

export function createLogger(options: { level: LogLevel; destination?: DestinationStream; name?: string }): Logger {
  const logger = pino(
    {
      name: options.name ?? 'leash',
      level: options.level,
      base: { pid: process.pid },
      timestamp: isoTime,
      redact: { paths: REDACT, censor: '[REDACTED]' },
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError },
    },
    options.destination ?? batchedStdout(),
  );
  // Marks loggers whose line layout fixedLine() may reproduce (inherited by children: pino
  // children are Object.create(parent)).
  Object.defineProperty(logger, OWN_LAYOUT, { value: true });
  return logger;
}

const OWN_LAYOUT = Symbol('leash.ownLayout');

let cachedSecond = Number.NaN;
let cachedHead = '';
/**
 * pino's `isoTime` (`,"time":"2026-11-26T16:11:59.536Z"`), the same text, without a Date
 * and its formatting per line: the part up to the second is made once a second.
 */
export function isoTimeAt(nowMs: number): string {
  const second = Math.floor(nowMs / 1000);
  if (second !== cachedSecond) {
    const iso = new Date(second * 1000).toISOString();
    // Years past 9999 are written with a sign and more digits: not cached, as pino writes them.
    if (iso.length !== 24) return `,"time":"${new Date(nowMs).toISOString()}"`;
    cachedSecond = second;
    cachedHead = `,"time":"${iso.slice(0, 20)}`;
  }
  const ms = nowMs - second * 1000;
  // Only whole milliseconds are kept (Date.now() gives nothing else), so the table stays bounded.
  return cachedHead + (Number.isInteger(ms) ? (MS_TAIL[ms] ??= msTail(ms)) : msTail(ms));
}
/** `007Z"`: the time's last piece (at most 5 characters: V8 makes it one flat string). */
const msTail = (ms: number): string => `${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
/** msTail per millisecond, made when first needed (nothing at start-up; ~30 KB once all are in): one piece fewer per line to copy. */
const MS_TAIL: Array<string | undefined> = new Array<string | undefined>(1000);
const isoTime = (): string => isoTimeAt(Date.now());

/**
 * stdout, batched (log-batch.ts): one write(2) per ~4 KiB or 100 ms instead of one async
 * write per line, flushed in full on exit.
 *
 * UV_USE_IO_URING must stay unset (or 0): with it libuv submits file writes through
 * io_uring, which doubled leash's CPU at saturation (issue 11). libuv reads it once, when
 * the first loop starts, before any JavaScript runs, so only the environment can set it
 * (docs/observability.md); these writes are synchronous and never reach io_uring anyway.
 */
export function batchedStdout(): BatchedFdDestination {
  nonBlockingStdout();
  return new BatchedFdDestination(1);
}

/**
 * A pipe or socket on fd 1 is made non-blocking before the first line is written, so a log
 * reader that stops reading (a stuck container log shim, a paused `| tee`) shows up as
 * EAGAIN: lines are kept up to LOG_BATCH.maxBuffered, then dropped and counted
 * (log-batch.ts), and the proxy, /healthz, revocations and SIGTERM go on. A blocking fd
 * would stop the whole process in write(2) once the pipe is full. Opening `process.stdout`
 * is what does it: Node hands a pipe or socket to libuv (uv_pipe_open), which sets
 * O_NONBLOCK; leash never writes its logs through that stream. Before, this happened only
 * by chance, at the first proxied response's `pipe()` (which compares its destination with
 * `process.stdout`): a sidecar that had only refused requests hung on a full pipe. Files
 * are untouched (they never block on a reader); Node restores the fd's flags at exit.
 */
function nonBlockingStdout(): void {
  // The read is the point (a getter with a side effect); the value itself is unused.
  if (process.stdout.writable !== true) return;
}

/**
 * A writer for one fixed-schema line (the per-request audit line, audit.ts), laid out
 * exactly as pino would lay it out for `logger.info({...})` on this logger — level, time,
 * bindings, then `body` (`,"key":value…` already JSON) — and written through the same
 * destination, without building an object, merging bindings or redacting (the caller
 * writes only its own fixed fields). Undefined for a logger whose layout could differ
 * (not made by createLogger, or a destination that needs pino's metadata, as multistream).
 */
export function fixedLine(logger: Logger): ((body: string) => void) | undefined {
  const l = logger as unknown as Record<symbol, unknown> & Logger;
  const stream = l[pino.symbols.streamSym] as (DestinationStream & Record<symbol, unknown>) | undefined;
  if (l[OWN_LAYOUT] !== true || !stream || typeof stream.write !== 'function' || stream[pino.symbols.needsMetadataGsym] === true) return undefined;
  const info = logger.levels.values.info!;
  return (body) => {
    if (logger.levelVal > info) return;
    const prefix = (l[pino.symbols.lsCacheSym] as Record<number, string>)[info]!;
    const time = (l[pino.symbols.timeSym] as () => string)();
    stream.write(prefix + time + (l[pino.symbols.chindingsSym] as string) + body + (l[pino.symbols.endSym] as string));
  };
}

/** Errors are logged by code, message and cause chain; never a request or a socket. */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.name, message: err.message };
  const coded = err as Error & { code?: unknown; context?: unknown };
  if (coded.code !== undefined) out.code = coded.code;
  if (coded.context !== undefined) out.context = coded.context;
  if (err.cause !== undefined) out.cause = serializeError(err.cause);
  return out;
}
