import { createHash } from 'node:crypto';
import { isUsableLeaseValue, MAX_LEASE_VALUE, type LeaseResponse } from '../../core/protocol.js';

/**
 * Validation of what the authority answers to a lease request. Anything malformed,
 * inconsistent or already expired is refused as a whole (the caller keeps what it
 * holds while that is valid). Checks are self-consistency only, never against the
 * sidecar's wall clock, so a stepped clock cannot make a good lease look expired.
 */
export const MAX_LEASE_BODY = 64 * 1024;

export type LeaseCheck = { ok: true; lease: LeaseResponse } | { ok: false; reason: string };

export function checkLeaseResponse(body: unknown, credential: string): LeaseCheck {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { ok: false, reason: 'not a JSON object' };
  const b = body as Record<string, unknown>;
  const crit = criticalNotUnderstood(b);
  if (crit) return { ok: false, reason: crit };
  const str = (k: string, max = 256) => typeof b[k] === 'string' && (b[k] as string).length > 0 && (b[k] as string).length <= max;
  if (!str('lease', 128)) return { ok: false, reason: 'missing or bad "lease"' };
  if (b.credential !== credential) return { ok: false, reason: 'answer is for another credential' };
  if (!str('value', MAX_LEASE_VALUE) || !isUsableLeaseValue(b.value as string)) return { ok: false, reason: 'missing or unusable "value"' };
  if (!str('version') || !str('fingerprint')) return { ok: false, reason: 'missing "version" or "fingerprint"' };
  const value = b.value as string;
  if (b.fingerprint !== `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 12)}`) {
    return { ok: false, reason: 'fingerprint does not match the value' };
  }
  const ttl = b.ttlSeconds;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) return { ok: false, reason: 'ttlSeconds must be a positive number' };
  const issued = typeof b.issuedAt === 'string' ? Date.parse(b.issuedAt) : NaN;
  const expires = typeof b.expiresAt === 'string' ? Date.parse(b.expiresAt) : NaN;
  if (!Number.isFinite(issued) || !Number.isFinite(expires)) return { ok: false, reason: 'issuedAt/expiresAt must be ISO timestamps' };
  if (expires <= issued) return { ok: false, reason: 'expiresAt is not after issuedAt' };
  if (ttl * 1000 > expires - issued + 1000) return { ok: false, reason: 'ttlSeconds exceeds expiresAt − issuedAt' };
  const jwt = checkJwtShape(value);
  if (jwt) return { ok: false, reason: jwt };
  return { ok: true, lease: b as unknown as LeaseResponse };
}

/** A JWT-shaped value must not be unsigned and must not expire before it was issued. */
function checkJwtShape(value: string): string | undefined {
  const parts = value.split('.');
  if (parts.length !== 3 || !parts.every((p) => /^[A-Za-z0-9_-]*$/.test(p))) return undefined;
  // JSON null parses fine but has no properties: read both through optional chaining, never throw.
  let header: Record<string, unknown> | null;
  let payload: Record<string, unknown> | null;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as Record<string, unknown> | null;
    payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown> | null;
  } catch {
    return undefined; // not a JWT after all: an opaque token with dots
  }
  const alg = header?.alg;
  if (typeof alg !== 'string' || alg.toLowerCase() === 'none' || parts[2] === '') return 'JWT is unsigned (alg none)';
  if (typeof payload?.exp === 'number' && typeof payload.iat === 'number' && payload.exp <= payload.iat) return 'JWT exp is not after iat';
  return undefined;
}

/**
 * Fields of an authority's answer that this version understands when the answer marks
 * them critical: none yet. Extra fields in an answer are ignored (a newer authority may add
 * what an older sidecar can do without); one the sidecar must act on to use the answer
 * safely (a new credential kind, a proof-of-possession binding, a new way to inject) is
 * named in `crit`, as RFC 7515 §4.1.11 does for JWS headers, and an older sidecar refuses
 * that answer instead of using it as a plain value (docs/rotation.md, "Across versions").
 */
const UNDERSTOOD_CRITICAL: ReadonlySet<string> = new Set<string>();
/** A field name as a newer leash may name it in `crit` (nothing key-shaped: it goes into the refusal). */
const CRITICAL_NAME = /^[a-z][a-zA-Z_]{0,31}$/;

/** Pure: why an answer's `crit` makes it unusable here, or undefined (no `crit`, or every name understood). */
export function criticalNotUnderstood(b: Readonly<Record<string, unknown>>): string | undefined {
  const crit = b.crit;
  if (crit === undefined) return undefined;
  if (!Array.isArray(crit) || crit.length === 0 || crit.length > 16 || !crit.every((c) => typeof c === 'string' && CRITICAL_NAME.test(c))) {
    return '"crit" is not a list of field names';
  }
  const unknown = (crit as string[]).filter((c) => !UNDERSTOOD_CRITICAL.has(c));
  if (unknown.length === 0) return undefined;
  return `the authority marks ${unknown.map((c) => `"${c}"`).join(', ')} critical, which this sidecar does not understand (the authority is newer: upgrade the sidecar)`;
}
