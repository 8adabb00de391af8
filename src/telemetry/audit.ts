import type { Logger } from 'pino';
import { type Clock, systemClock } from '../core/clock.js';
import { msUntilToken, takeToken, type BucketLimit, type TokenBucket } from '../core/token-bucket.js';
import { minIdBefore, streamIdMs } from '../core/protocol.js';
import { fixedLine } from './logger.js';

/**
 * Audit events (DESIGN §8): log lines with `"audit":true,"event":"<name>"`. Credentials
 * are named by fingerprint; the fields are the ones below, defined once.
 */
export const AUDIT_EVENTS = [
  'instance.bootstrapped',
  'instance.renewed',
  'instance.revoked',
  'lease.issued',
  'lease.revoked',
  'policy.denied',
  'credential.acquired',
  'credential.rotated',
  'credential.refresh_failed',
  'credential.expired',
  'credential.revoked',
  'request',
  'request.denied',
  // extensions of DESIGN §8
  'token.created',
  // DESIGN §8, second wave: a holder's normal release (never `lease.revoked`)
  'lease.released',
  // per-request use, summarised per flush (docs/audit.md); stream only, written by usage-writer.ts
  'usage',
  // anomalies seen by the sidecar (docs/anomalies.md)
  'anomaly.new_operation',
  'anomaly.non_loopback_client',
  'anomaly.auth_failure_burst',
  // found by the authority in the shared stream (authority/cloned-leases.ts)
  'anomaly.cloned_credential',
] as const;
export type AuditEvent = (typeof AUDIT_EVENTS)[number];

export interface AuditFields {
  instance?: string;
  identity?: string;
  route?: string;
  credential?: string;
  fingerprint?: string;
  previousFingerprint?: string;
  lease?: string;
  method?: string;
  path?: string;
  status?: number;
  durationMs?: number;
  reason?: string;
  error?: string;
  by?: string;
  // anomaly.* (docs/anomalies.md)
  rule?: string;
  client?: string;
  count?: number;
  windowMs?: number;
  // anomaly.cloned_credential: the instances seen using one lease, comma-separated
  instances?: string;
}

export interface Audit {
  emit(event: AuditEvent, fields: AuditFields): void;
}

/** The schema version every audit event carries as `"v":1` (docs/audit.md). */
export const AUDIT_SCHEMA_VERSION = 1;

/** Somewhere audit events are copied to besides the log (the Redis stream `<prefix>audit`, core/protocol.ts auditKey). */
/** `at` (ISO time) is made by the sink, and only for what it keeps: most per-request events are skipped. */
export type AuditSink = (event: AuditEvent | string, fields: AuditFields, at?: string) => void;

export function createAudit(logger: Logger, sink?: AuditSink): Audit {
  const log = logger.child({ audit: true });
  // The per-request events skip the object spread, the merge and redact (≈ 30k instructions
  // a line, issue 11): their fields are all leash's own, none of them a redacted name.
  const fixed = fixedLine(log);
  return {
    emit(event, fields) {
      if (fixed !== undefined && PER_REQUEST_EVENTS.has(event)) fixed(requestLineBody(event, fields));
      else log.info({ v: AUDIT_SCHEMA_VERSION, event, ...fields });
      sink?.(event, fields);
    },
  };
}

/**
 * `,"v":1,"event":…` and the per-request fields, in the order the sidecar has always
 * written them (instance, route, method, path, status, durationMs, fingerprint, reason):
 * the same bytes as pino's line for the same object. Only these fields are written, so
 * nothing else a caller might pass can reach the log this way. Strings through
 * JSON.stringify (quotes, backslashes, control characters, lone surrogates escaped);
 * a non-finite number as null, as pino does.
 */
export function requestLineBody(event: string, f: AuditFields): string {
  let s = eventField.of(event);
  if (f.instance !== undefined) s += instanceField.of(f.instance);
  if (f.route !== undefined) s += routeField.of(f.route);
  if (f.method !== undefined) s += methodField.of(f.method);
  if (f.path !== undefined) s += `,"path":${jsonString(f.path)}`;
  if (f.status !== undefined) s += statusField(f.status);
  if (f.durationMs !== undefined) s += `,"durationMs":${millisJson(f.durationMs)}`;
  if (f.fingerprint !== undefined) s += fingerprintField.of(f.fingerprint);
  if (f.reason !== undefined) s += `,"reason":${jsonString(f.reason)}`;
  return s;
}

/**
 * One field, `,"key":<JSON>`, for the last value it was asked for: the event, instance, route,
 * method and fingerprint rarely change between lines. The piece is one flat string (joined,
 * not concatenated), so each line is fewer, larger pieces for V8 to copy when the batch is
 * written (log-batch.ts; bench/RESULTS.md, ninth session).
 */
class LastField {
  private last: string | undefined;
  private json = '';
  constructor(private readonly key: string) {}
  of(s: string): string {
    if (s !== this.last) {
      this.json = [this.key, jsonString(s)].join('');
      this.last = s;
    }
    return this.json;
  }
}
const eventField = new LastField(`,"v":${AUDIT_SCHEMA_VERSION},"event":`);
const instanceField = new LastField(',"instance":');
const routeField = new LastField(',"route":');
const methodField = new LastField(',"method":');
const fingerprintField = new LastField(',"fingerprint":');

/** `,"status":N` for each integer status 0-999, made on first use; anything else as jsonNumber writes it. */
const STATUS_FIELDS: Array<string | undefined> = [];
function statusField(status: number): string {
  if (!(Number.isInteger(status) && status >= 0 && status < 1000)) return `,"status":${jsonNumber(status)}`;
  return (STATUS_FIELDS[status] ??= [',"status":', String(status)].join(''));
}

/**
 * JSON.stringify(s), exactly: a string of printable ASCII other than `"` and `\` (route
 * names, methods, plain paths, fingerprints, error types) is quoted as it is, without the
 * call into the runtime's serializer; anything else goes to JSON.stringify.
 */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return JSON.stringify(s);
  }
  return `"${s}"`;
}

function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/**
 * A duration in ms, to the microsecond, as JSON: the same text as
 * `jsonNumber(Math.round(ms * 1000) / 1000)` (below 1e12 ms every such value's shortest
 * round-trip form is its decimal with at most three fractional digits), built from
 * integers — `String` of a fractional double (its shortest-digits search) was ~1 % of the
 * proxy's CPU at saturation. Pinned against the general form in test/unit/hot-path-fast-paths.test.ts.
 */
export function millisJson(ms: number): string {
  const us = Math.round(ms * 1000);
  if (!(us >= 0 && us < 1e15)) return jsonNumber(us / 1000);
  const whole = Math.floor(us / 1000);
  const frac = us - whole * 1000;
  if (frac === 0) return String(whole);
  if (frac % 100 === 0) return `${whole}.${frac / 100}`;
  if (frac % 10 === 0) return `${whole}.${frac < 100 ? '0' : ''}${frac / 10}`;
  return `${whole}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}`;
}

/** Per-request events: logged, but not copied to the shared stream (one XADD per proxied request). */
export const PER_REQUEST_EVENTS: ReadonlySet<string> = new Set(['request', 'request.denied']);

/**
 * A budget for one writer's entries in the shared audit stream: `burst` at once, refilled
 * at `perMinute`. Without one, a sidecar in a refresh loop appended ~135 lifecycle events
 * a second and pushed the whole fleet's history out of the capped stream in minutes.
 */
export type AuditStreamLimit = BucketLimit;

export const DEFAULT_AUDIT_STREAM_LIMIT: AuditStreamLimit = { burst: 100, perMinute: 30 };

/** The sink, plus `close()`: writes a pending suppressed summary at once (outside the budget) and stops its timer. */
export type RedisAuditSink = AuditSink & { close(): void };

/**
 * Appends audit events to a Redis stream (DESIGN §8), capped at about `maxLen` entries.
 * Best effort: a Redis outage never blocks or fails the operation being audited (the log
 * line is the record of last resort); failures are counted in the log at most once a minute.
 * With `limit`, this writer appends at most burst + perMinute·t/60 000 entries in any t ms
 * (+1 summary at close): events over the budget stay in the log only and are counted into
 * one `audit.suppressed` entry (count, events by name, first and last time), written when
 * the budget allows, so the stream shows the gap instead of silence.
 */
export function redisAuditSink(
  client: { xadd(key: string, ...args: (string | number)[]): Promise<unknown>; xtrim?(key: string, minid: 'MINID', approx: '~', threshold: string): Promise<unknown> },
  key: string,
  logger: Logger,
  maxLen = 100_000,
  skip: ReadonlySet<string> = new Set(),
  limit?: AuditStreamLimit,
  clock: Clock = systemClock,
  maxAgeMs = 0,
): RedisAuditSink {
  let lastWarn = 0;
  const warn = (err: unknown) => {
    if (Date.now() - lastWarn > 60_000) {
      lastWarn = Date.now();
      logger.warn({ err }, 'audit stream append failed');
    }
  };
  // Retention by age as well as length: XADD takes one trim strategy, so the age trim is a
  // separate XTRIM, at most once a minute (it only moves with the clock).
  let lastTrimMs = -Infinity;
  const append = (flat: string[]) => {
    // `event` and `at` stay the first two fields (readers index them), then the version.
    const added = client.xadd(key, 'MAXLEN', '~', maxLen, '*', ...flat.slice(0, 4), 'v', String(AUDIT_SCHEMA_VERSION), ...flat.slice(4));
    const now = clock.monotonicMs();
    if (maxAgeMs > 0 && client.xtrim && now - lastTrimMs >= 60_000) {
      lastTrimMs = now;
      // The threshold is counted back from the id Redis just gave the entry (its clock made
      // every id in the stream), never from ours: a writer whose clock is ahead trimmed what
      // every other writer had just added.
      const xtrim = client.xtrim.bind(client);
      void added.then((id) => {
        const ms = streamIdMs(id);
        if (Number.isFinite(ms)) return xtrim(key, 'MINID', '~', minIdBefore(ms, maxAgeMs));
      }).catch(warn);
    } else void added.catch(warn);
  };
  let bucket: TokenBucket = { tokens: limit?.burst ?? 0, atMs: clock.monotonicMs() };
  let pending: { count: number; events: Map<string, number>; first: string; last: string; instance: string | undefined } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const take = (): boolean => {
    const t = takeToken(bucket, clock.monotonicMs(), limit!);
    bucket = t.bucket;
    return t.ok;
  };
  const writeSummary = () => {
    const p = pending!;
    pending = undefined;
    if (timer) clearTimeout(timer);
    timer = undefined;
    const events = [...p.events].map(([e, n]) => `${e}=${n}`).join(',');
    const flat = ['event', 'audit.suppressed', 'at', new Date(clock.wallMs()).toISOString()];
    if (p.instance !== undefined) flat.push('instance', p.instance);
    append([...flat, 'count', String(p.count), 'events', events, 'first', p.first, 'last', p.last]);
    logger.warn({ suppressed: p.count, events }, 'audit stream budget exceeded: these events are in the log only');
  };
  // When the writer falls silent after a burst, the summary still goes out once a token is back.
  const scheduleSummary = () => {
    if (timer || !limit) return;
    timer = setTimeout(() => {
      timer = undefined;
      if (pending && take()) writeSummary();
      else if (pending) scheduleSummary();
    }, msUntilToken(bucket, limit));
    timer.unref();
  };
  const sink = ((event, fields, given) => {
    if (skip.has(event)) return;
    const at = given ?? new Date(clock.wallMs()).toISOString();
    if (limit) {
      if (pending && take()) writeSummary();
      if (pending || !take()) {
        pending ??= { count: 0, events: new Map(), first: at, last: at, instance: fields.instance };
        pending.count++;
        pending.last = at;
        pending.events.set(event, (pending.events.get(event) ?? 0) + 1);
        scheduleSummary();
        return;
      }
    }
    const flat: string[] = ['event', event, 'at', at];
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) flat.push(k, String(v));
    append(flat);
  }) as RedisAuditSink;
  sink.close = () => {
    if (pending) writeSummary();
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  return sink;
}
