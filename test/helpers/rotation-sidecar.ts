import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createLocalJWKSet, decodeJwt, errors as joseErrors, jwtVerify, type JSONWebKeySet } from 'jose';
import { MemoryStore } from '../../src/authority/leases/memory.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit, type Audit, type AuditEvent, type AuditFields } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from './harness.js';
import { waitFor as poll } from './wait.js';

/**
 * Helpers for the rotation-lifecycle tests: a sidecar built directly (so it can take an
 * injected clock) whose audit events are also kept with their monotonic time, a clock
 * that can be stepped, a store that remembers every lease it was given, a strict JWT
 * upstream that counts what it saw, request loops, and polling with a deadline.
 */

/** An audit event as the sidecar emitted it, stamped on the monotonic clock. */
export interface TimedEvent {
  event: AuditEvent;
  fields: AuditFields;
  mono: number;
}

export class RecordingAudit implements Audit {
  readonly events: TimedEvent[] = [];
  constructor(private readonly inner: Audit) {}
  emit(event: AuditEvent, fields: AuditFields): void {
    // `request` events are many under load and not needed here; the log keeps them.
    if (event !== 'request') this.events.push({ event, fields, mono: performance.now() });
    this.inner.emit(event, fields);
  }
  of(event: AuditEvent): TimedEvent[] {
    return this.events.filter((e) => e.event === event);
  }
}

/** A wall clock that can be stepped; the monotonic clock is the process's own. */
export interface SteppableClock extends Clock {
  offsetMs: number;
}

export function steppableClock(): SteppableClock {
  const clock: SteppableClock = {
    offsetMs: 0,
    monotonicMs: () => performance.now(),
    wallMs: () => Date.now() + clock.offsetMs,
  };
  return clock;
}

/** Count audit lines of one event in a (possibly large) captured log without parsing every line. */
export function countEvents(logs: LogSink, event: string): number {
  const needle = `"event":"${event}"`;
  let n = 0;
  for (const l of logs.lines) if (l.includes(needle)) n++;
  return n;
}

export function eventsOf(logs: LogSink, event: string): Record<string, unknown>[] {
  const needle = `"event":"${event}"`;
  return logs.lines.filter((l) => l.includes(needle)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

export interface RotationSidecar {
  sidecar: Sidecar;
  url: string;
  adminUrl: string;
  logs: LogSink;
  audit: RecordingAudit;
  stop(): Promise<void>;
}

/** As harness.startSidecar, plus an injected clock and a RecordingAudit. */
export async function startRotationSidecar(
  config: Record<string, unknown>,
  options: { authorityCa: string; joinToken: () => string | undefined; clock?: Clock; env?: Record<string, string> },
): Promise<RotationSidecar> {
  const env = options.env ?? {};
  const parsed = parseConfig(sidecarSchema, JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', shutdown: { grace: '2s' }, ...config }), env);
  const logs = new LogSink();
  const logger = createLogger({ level: 'debug', destination: logs });
  const audit = new RecordingAudit(createAudit(logger));
  const sidecar = new Sidecar({
    config: parsed,
    env,
    caFiles: new Map(),
    logger,
    audit,
    clock: options.clock,
    authorityCa: options.authorityCa,
    joinToken: options.joinToken,
  });
  const addrs = await sidecar.start();
  return {
    sidecar,
    url: `http://127.0.0.1:${addrs.proxy.port}`,
    adminUrl: `http://127.0.0.1:${addrs.admin.port}`,
    logs,
    audit,
    stop: () => sidecar.stop(),
  };
}

/** Every lease the authority stored, with the monotonic time and the authority's clock offset at issue. */
export class RecordingStore extends MemoryStore {
  readonly issued = new Map<string, { record: LeaseRecord; mono: number; offsetMs: number }>();
  readonly byFingerprint = new Map<string, { record: LeaseRecord; mono: number; offsetMs: number }>();
  constructor(private readonly clock?: SteppableClock) {
    super({ clock });
  }
  override async putLease(record: LeaseRecord): Promise<void> {
    const entry = { record: { ...record }, mono: performance.now(), offsetMs: this.clock?.offsetMs ?? 0 };
    this.issued.set(record.id, entry);
    this.byFingerprint.set(record.fingerprint, entry);
    await super.putLease(record);
  }
}

export interface TokenSeen {
  fingerprint: string;
  count: number;
  firstMono: number;
  lastMono: number;
}

export interface UpstreamStats {
  ok: number;
  /** Requests answered 401 for any reason (bad signature, audience, expiry, missing token, forced). */
  failed: number;
  expired: number;
  notYetValid: number;
  otherFailures: string[];
  tokens: Map<string, TokenSeen>;
}

export interface StrictUpstreamOptions {
  jwks: JSONWebKeySet;
  /** Expected audience for a request path (e.g. by its first segment). */
  audience: (path: string) => string;
  /** The verifier's notion of now for a token; default the real clock. */
  currentDate?: (claims: { jti?: string }) => Date;
  /**
   * Called before verifying; returning a number answers with that status at once
   * (a Promise delays the answer). Used to force upstream 401s.
   */
  intercept?: (token: string, req: IncomingMessage) => number | Promise<number> | undefined;
}

/**
 * An upstream that verifies every bearer JWT with jose, strictly: signature against the
 * authority's JWKS, audience, exp/nbf with clockTolerance 0. Anything wrong → 401, counted.
 */
export async function startStrictJwtUpstream(opts: StrictUpstreamOptions): Promise<Upstream & { stats: UpstreamStats }> {
  const jwks = createLocalJWKSet(opts.jwks);
  const stats: UpstreamStats = { ok: 0, failed: 0, expired: 0, notYetValid: 0, otherFailures: [], tokens: new Map() };
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const arrived = performance.now();
    const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    const fp = fingerprint(token);
    const seen = stats.tokens.get(token) ?? { fingerprint: fp, count: 0, firstMono: arrived, lastMono: arrived };
    seen.count++;
    seen.lastMono = arrived;
    stats.tokens.set(token, seen);
    const forced = await opts.intercept?.(token, req);
    if (forced !== undefined) {
      stats.failed++;
      res.writeHead(forced, { 'content-type': 'text/plain' }).end('forced');
      return;
    }
    try {
      let jti: string | undefined;
      try {
        jti = decodeJwt(token).jti;
      } catch {
        jti = undefined;
      }
      const path = (req.url ?? '/').split('?')[0]!;
      await jwtVerify(token, jwks, {
        audience: opts.audience(path),
        clockTolerance: 0,
        ...(opts.currentDate ? { currentDate: opts.currentDate({ jti }) } : {}),
      });
      stats.ok++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ fp }));
    } catch (err) {
      stats.failed++;
      if (err instanceof joseErrors.JWTExpired) stats.expired++;
      else if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'nbf') stats.notYetValid++;
      else if (stats.otherFailures.length < 20) stats.otherFailures.push(`${(err as Error).name}: ${(err as Error).message}`);
      res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized');
    }
  };
  const up = await startUpstream((req, res) => void handler(req, res), createServer({ keepAliveTimeout: 10_000 }));
  return Object.assign(up, { stats });
}

export interface RequestResult {
  url: string;
  status: number;
  leashError: string | null;
  retryAfter: string | null;
  startMono: number;
  endMono: number;
}

/** `n` loops, each sending one request after another to urls[i % urls.length] until `stop()`. */
export async function runLoops(urls: readonly string[], n: number, stop: () => boolean): Promise<RequestResult[]> {
  const results: RequestResult[] = [];
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const url = urls[i % urls.length]!;
      while (!stop()) {
        const startMono = performance.now();
        try {
          const res = await fetch(url);
          await res.arrayBuffer();
          results.push({ url, status: res.status, leashError: res.headers.get('x-leash-error'), retryAfter: res.headers.get('retry-after'), startMono, endMono: performance.now() });
        } catch {
          results.push({ url, status: 0, leashError: null, retryAfter: null, startMono, endMono: performance.now() });
        }
      }
    }),
  );
  return results;
}

/** Poll until `fn` returns something truthy; fail with `what` after `timeoutMs`. */
export const waitFor = <T>(fn: () => T | Promise<T>, what: string, timeoutMs: number, intervalMs = 20): Promise<NonNullable<T>> =>
  poll(fn, { timeoutMs, intervalMs, message: what });

export { sleep } from './wait.js';
