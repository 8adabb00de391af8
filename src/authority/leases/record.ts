import type { LeaseRecord } from '../../core/protocol.js';
import { StoreRecordError } from './errors.js';
import type { JoinTokenRecord } from './types.js';

/**
 * Shape checks shared by every store: on the way in (a caller bug is refused loudly) and on
 * the way out of Redis (anything that does not parse is treated as absent, never trusted).
 */

/** DESIGN §8 fingerprint. Requiring it means a value passed by mistake is refused, not stored. */
const FINGERPRINT = /^sha256:[0-9a-f]{12}$/;
/** Ids and names end up inside Redis keys: printable, no spaces, bounded. */
const KEY_PART = /^[\x21-\x7e]{1,256}$/;

function isKeyPart(v: unknown): v is string {
  return typeof v === 'string' && KEY_PART.test(v);
}

/** The largest time a Date holds (ms): a record past it is corrupt, not a crash of whoever formats it. */
const MAX_DATE_MS = 8.64e15;

function isMs(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_DATE_MS;
}

function leaseProblem(r: Partial<Record<keyof LeaseRecord, unknown>>): string | undefined {
  if (!isKeyPart(r.id)) return 'id must be 1-256 printable characters without spaces';
  if (!isKeyPart(r.instance)) return 'instance must be 1-256 printable characters without spaces';
  if (!isKeyPart(r.credential)) return 'credential must be 1-256 printable characters without spaces';
  if (typeof r.fingerprint !== 'string' || !FINGERPRINT.test(r.fingerprint)) return 'fingerprint must be sha256:<12 hex> (a store never holds a value)';
  if (typeof r.version !== 'string' || r.version.length > 256) return 'version must be a string of at most 256 characters';
  if (!isMs(r.issuedAtMs)) return 'issuedAtMs must be a finite, non-negative number';
  if (!isMs(r.expiresAtMs)) return 'expiresAtMs must be a finite, non-negative number';
  return undefined;
}

/** Throws StoreRecordError when the record cannot be stored. Returns a detached copy. */
export function checkLeaseRecord(record: LeaseRecord): LeaseRecord {
  const problem = leaseProblem(record);
  if (problem) throw new StoreRecordError(`lease record refused: ${problem}`, { lease: typeof record.id === 'string' ? record.id.slice(0, 64) : undefined });
  return copyLease(record);
}

export function checkJoinTokenRecord(hash: string, record: JoinTokenRecord): JoinTokenRecord {
  if (!/^[0-9a-f]{64}$/.test(hash)) throw new StoreRecordError('join token refused: the key must be a hex sha256 hash, never the token');
  if (!isKeyPart(record.identity)) throw new StoreRecordError('join token refused: identity must be 1-256 printable characters');
  if (!isMs(record.expiresAtMs)) throw new StoreRecordError('join token refused: expiresAtMs must be a finite, non-negative number');
  if (record.mac !== undefined && !isMac(record.mac)) throw new StoreRecordError('join token refused: mac must be 64 hex digits');
  return { identity: record.identity, expiresAtMs: record.expiresAtMs, ...(record.mac !== undefined ? { mac: record.mac } : {}) };
}

const isMac = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{64}$/.test(v);

/** An identity (SPIFFE ID) and a time for the identity registry or a revocation mark; throws StoreRecordError. */
export function checkIdentityEntry(identity: string, ms: number, what: 'identity' | 'revocation'): void {
  if (!isKeyPart(identity)) throw new StoreRecordError(`${what} refused: identity must be 1-256 printable characters without spaces`);
  if (!isMs(ms)) throw new StoreRecordError(`${what} refused: the expiry must be a finite, non-negative number of ms`, { identity: identity.slice(0, 128) });
}

/** Only the known fields, so nothing a caller (or Redis) slipped in travels further. */
export function copyLease(r: LeaseRecord): LeaseRecord {
  return {
    id: r.id,
    instance: r.instance,
    credential: r.credential,
    fingerprint: r.fingerprint,
    version: r.version,
    issuedAtMs: r.issuedAtMs,
    expiresAtMs: r.expiresAtMs,
  };
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A lease record as read back from storage; undefined when it is not one. */
export function parseLeaseRecord(text: string): LeaseRecord | undefined {
  const o = parseObject(text);
  if (!o || leaseProblem(o) !== undefined) return undefined;
  return copyLease(o as unknown as LeaseRecord);
}

export function parseJoinTokenRecord(text: string): JoinTokenRecord | undefined {
  const o = parseObject(text);
  if (!o || !isKeyPart(o.identity) || !isMs(o.expiresAtMs)) return undefined;
  // No MAC, or a malformed one: still a record (taken, then refused by JoinTokens.redeem).
  return { identity: o.identity, expiresAtMs: o.expiresAtMs, ...(isMac(o.mac) ? { mac: o.mac } : {}) };
}
