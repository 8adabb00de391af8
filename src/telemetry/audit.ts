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
}

export interface Audit {
  emit(event: AuditEvent, fields: AuditFields): void;
}

export function createAudit(logger: Logger): Audit {
  const log = logger.child({ audit: true });
  return {
    emit(event, fields) {
      log.info({ event, ...fields });
    },
  };
}
