import type { Logger } from 'pino';

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
}

export interface Audit {
  emit(event: AuditEvent, fields: AuditFields): void;
}

/** Somewhere audit events are copied to besides the log (the Redis stream `leash:audit`). */
export type AuditSink = (event: AuditEvent | string, fields: AuditFields, at: string) => void;

export function createAudit(logger: Logger, sink?: AuditSink): Audit {
  const log = logger.child({ audit: true });
  return {
    emit(event, fields) {
      log.info({ event, ...fields });
      sink?.(event, fields, new Date().toISOString());
    },
  };
}

/** Per-request events: logged, but not copied to the shared stream (one XADD per proxied request). */
export const PER_REQUEST_EVENTS: ReadonlySet<string> = new Set(['request', 'request.denied']);

/**
 * Appends audit events to a Redis stream (DESIGN §8), capped at about `maxLen` entries.
 * Best effort: a Redis outage never blocks or fails the operation being audited (the log
 * line is the record of last resort); failures are counted in the log at most once a minute.
 */
export function redisAuditSink(
  client: { xadd(key: string, ...args: (string | number)[]): Promise<unknown> },
  key: string,
  logger: Logger,
  maxLen = 100_000,
  skip: ReadonlySet<string> = new Set(),
): AuditSink {
  let lastWarn = 0;
  return (event, fields, at) => {
    if (skip.has(event)) return;
    const flat: string[] = ['event', event, 'at', at];
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) flat.push(k, String(v));
    client.xadd(key, 'MAXLEN', '~', maxLen, '*', ...flat).catch((err: unknown) => {
      if (Date.now() - lastWarn > 60_000) {
        lastWarn = Date.now();
        logger.warn({ err }, 'audit stream append failed');
      }
    });
  };
}
