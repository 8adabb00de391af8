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
