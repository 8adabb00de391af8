import pino, { type DestinationStream, type Logger } from 'pino';
import type { z } from 'zod';
import type { logLevel } from '../config/common.js';

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
  return pino(
    {
      name: options.name ?? 'leash',
      level: options.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[REDACTED]' },
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError },
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
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
