/**
 * The one home of what leash's parts say to each other (DESIGN §9); imports nothing.
 * - Wire types between sidecar (and admin CLI) and authority: JSON over HTTPS. Every
 *   field the sidecar relies on is validated on receipt
 *   (src/sidecar/credentials/lease-response.ts); a malformed answer is rejected, never
 *   half-used.
 * - Revocations (DESIGN §7): the scopes, the entry, and the one parser of stream entries
 *   and pub/sub messages, used by the bus, the verifier, `leash dev`'s in-process bus and
 *   `leash revoke` (the authority's answer).
 * - Redis key names (the configurable prefix, the revocation stream and channel, its
 *   epoch, the audit stream, the lease store's keys) and audit stream entries.
 * - The JWT claims leash adds to the tokens its jwt issuer signs, and how they are read.
 * Key names, field names, claim names and the malformed-entry texts are a contract
 * (DESIGN §7, §8, docs/revocation.md, docs/audit.md, docs/verify.md): change none.
 */

/**
 * POST /v1/bootstrap — attestation evidence + CSR → identity certificate. No client cert.
 * `attestation` names the attestor (src/core/attestation.ts): `{ kind: "join_token" |
 * "kubernetes", token }`. The older shape `{ joinToken, csr }` is still accepted and means
 * `{ attestation: { kind: "join_token", token: joinToken }, csr }`.
 */
export interface BootstrapRequest {
  attestation?: { kind: string; token: string };
  /** Older sidecars: a one-time join token. */
  joinToken?: string;
  /** PEM PKCS#10 CSR made by the sidecar with its own fresh key. */
  csr: string;
}

/** POST /v1/identity/renew — mTLS with the current identity + a CSR for a new key. */
export interface RenewIdentityRequest {
  csr: string;
}

export interface IdentityResponse {
  /** spiffe://<trustDomain>/... */
  identity: string;
  /** PEM leaf certificate. */
  certificate: string;
  /** PEM CA certificate(s) to trust for the authority and verify peers. */
  ca: string;
  issuedAt: string; // ISO
  expiresAt: string; // ISO
  ttlSeconds: number;
}

/** POST /v1/leases — mTLS; lease a credential by name. */
export interface LeaseRequest {
  credential: string;
  /** Requested TTL; capped by policy and issuer. */
  ttlSeconds?: number;
}

export interface LeaseResponse {
  lease: string; // lease id
  credential: string; // credential name
  value: string; // the secret (only ever in this body)
  fingerprint: string; // sha256:<12 hex>
  version: string;
  issuedAt: string; // ISO
  expiresAt: string; // ISO
  ttlSeconds: number;
}

/** Any non-2xx answer from the authority. */
export interface AuthorityErrorBody {
  error: { code: string; message: string };
}

/** What the lease store keeps: never the value, only its fingerprint. */
export interface LeaseRecord {
  id: string;
  instance: string; // identity URI
  credential: string;
  fingerprint: string;
  version: string;
  issuedAtMs: number; // wall-clock ms
  expiresAtMs: number;
}

/** POST /v1/admin/revoke — admin bearer token; actor from the `x-leash-actor` header. */
export interface RevokeRequest {
  scope: RevocationScope;
  /** Lease id, SPIFFE ID (or `join:NAME`), credential name, or '*' for all. */
  target: string;
  reason?: string;
}

export interface RevokeResponse {
  revocation: Revocation;
  /** Leases this revocation deleted at the authority. */
  leases: number;
  /** Present when the target was unknown to the authority and the revocation was published anyway. */
  warning?: string;
}

export const API = {
  bootstrap: '/v1/bootstrap',
  renewIdentity: '/v1/identity/renew',
  leases: '/v1/leases',
  /** DELETE /v1/leases/<id> releases it. */
  lease: (id: string) => `/v1/leases/${encodeURIComponent(id)}`,
  jwks: '/.well-known/jwks.json',
  adminTokens: '/v1/admin/tokens',
  adminLeases: '/v1/admin/leases',
  adminRevoke: '/v1/admin/revoke',
  /** GET ?fingerprint=sha256:<12 hex> — leases and audit events of one credential value. */
  adminTrace: '/v1/admin/trace',
  healthz: '/healthz',
} as const;

/** GET /v1/admin/trace answer: what held a credential value (by fingerprint) and what it did. */
export interface TraceResponse {
  fingerprint: string;
  /** Unexpired leases with this fingerprint. */
  leases: LeaseRecord[];
  /** Audit events naming this fingerprint, oldest first (from the Redis audit stream; empty without Redis). */
  events: AuditEntry[];
  /** False when no audit stream is kept (in-memory store). */
  auditStream: boolean;
  /** Who held the value: one row per lease (per instance for a local source), with lifecycle times (ISO). */
  holders?: TraceHolder[];
  /** What was done with it: the `usage` summaries of its leases, added up (docs/audit.md). */
  operations?: TraceOperation[];
}

export interface TraceHolder {
  lease: string | undefined;
  /** Identities (SPIFFE IDs) and sidecar instance ids that held it. */
  instances: string[];
  credential?: string;
  issued?: string;
  acquired?: string;
  rotated?: string;
  /** When a rotation replaced this value with the next one. */
  replaced?: string;
  released?: string;
  revoked?: string;
  expired?: string;
  expires?: string;
}

export interface TraceOperation {
  lease?: string;
  instance?: string;
  route?: string;
  method?: string;
  path: string;
  /** Status class: `2xx`, `4xx`, … */
  status?: string;
  denied?: string;
  count: number;
  first: string;
  last: string;
}

// ---------------------------------------------------------------------------------------
// Revocations (DESIGN §7)
// ---------------------------------------------------------------------------------------

/**
 * What a revocation covers: `lease` (one lease id), `instance` (a SPIFFE ID: its identity
 * and every lease), `credential` (every lease of a credential name), `all` (everything).
 */
export const REVOCATION_SCOPES = ['lease', 'instance', 'credential', 'all'] as const;
export type RevocationScope = (typeof REVOCATION_SCOPES)[number];

/** The only target of scope `all`. */
export const ALL_TARGET = '*';

/**
 * A published revocation: an entry of the stream `<prefix>revocations` (fields scope,
 * target, reason, at, by) and, with its id, the JSON message on the channel of that name.
 * The stream is the source of truth, pub/sub the fast path; subscribers read the stream
 * from their last position after every (re)subscription, so none is missed, and ignore
 * duplicates by id.
 */
export interface Revocation {
  /** Stream id `<ms>-<seq>`: orders revocations and deduplicates them. */
  id: string;
  scope: RevocationScope;
  /** Lease id, instance identity (SPIFFE ID; a `join:NAME` request is answered with the full ID), credential name, or '*' for all. */
  target: string;
  reason: string;
  /** ISO time of publication (for revocation_lag_seconds, and what a verifier denies). */
  at: string;
  /** Who revoked (admin actor). */
  by: string;
  /**
   * Set when the entry was written by a newer leash and this one cannot tell what it
   * covers (a scope it does not know, a target it cannot read, or a `crit` field naming
   * what a reader must understand): `scope` is then `all`
   * and `target` '*' (fail closed: everything issued before `at`), and this says what
   * was written, for logs: the scope, and the target cut to 128 characters ('' when it
   * was not a string of 1–2048 characters).
   */
  notUnderstood?: { scope: string; target: string };
}

export type NewRevocation = Omit<Revocation, 'id' | 'at'>;

/** Longest target accepted (a SPIFFE ID may be 2048 bytes). */
export const MAX_REVOCATION_TARGET = 2048;
/** Longer `reason` and `by` values are cut to these lengths on receipt. */
export const MAX_REVOCATION_REASON = 512;
export const MAX_REVOCATION_BY = 128;

/**
 * Why an entry or message is not a revocation (a stable code; `message` says it to people).
 * `bad_target` is no longer given (an unreadable target is a revocation not understood,
 * taken as `all`); the code stays so that nothing matching on it breaks.
 */
export type RevocationRefusal = 'not_json' | 'not_object' | 'bad_id' | 'bad_scope' | 'bad_target' | 'bad_at';

export type ParsedRevocation = { ok: true; revocation: Revocation } | { ok: false; reason: RevocationRefusal; message: string };

const STREAM_ID = /^\d+-\d+$/;

/** A Redis stream id `<ms>-<seq>`. */
export const isStreamId = (id: unknown): id is string => typeof id === 'string' && STREAM_ID.test(id);

/** Pure: the time part (Redis' clock, ms) of a stream id Redis gave; NaN for anything else. */
export const streamIdMs = (id: unknown): number => (isStreamId(id) ? Number(id.slice(0, id.indexOf('-'))) : NaN);

/** Pure: the `MINID` threshold that keeps the last `maxAgeMs` before `newestMs` (both on Redis' clock). */
export const minIdBefore = (newestMs: number, maxAgeMs: number): string => `${Math.max(0, newestMs - maxAgeMs)}-0`;

/** Pure: Redis' `TIME` reply (`[seconds, microseconds]`) in ms; NaN for anything else. */
export function redisTimeMs(reply: unknown): number {
  if (!Array.isArray(reply) || reply.length !== 2) return NaN;
  return Number(reply[0]) * 1000 + Math.floor(Number(reply[1]) / 1000);
}

/** Stream ids compare by (ms, seq). */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number];
  const [bm, bs] = b.split('-').map(Number) as [number, number];
  return am !== bm ? am - bm : as - bs;
}

/**
 * What a scope written by any version of leash looks like (1–32 lowercase letters and
 * `_`): a newer leash may add scopes, never change this shape, so an entry whose scope
 * has it is a revocation even when this version does not know the scope
 * (docs/revocation.md, "Across versions"). Nothing key-shaped (digits, `-`) passes, so
 * an unknown scope can be logged.
 */
const SCOPE_SHAPE = /^[a-z][a-z_]{0,31}$/;

/**
 * Check one revocation given as fields and its stream id. Checked in this order: id, scope
 * (scope-shaped), at (a parseable time): without these it is not a revocation (refused).
 * Then the scope is one this version knows and its target 1–2048 characters, or else the
 * entry is a revocation of a newer leash that this one cannot read: it is taken as `all`
 * at its `at`, with `notUnderstood` set (fail closed: a newer authority's revocation is
 * never silently ignored by an older sidecar or verifier). reason and by are optional,
 * cut to 512 and 128 characters, '' when absent or not strings. Other fields are ignored:
 * a newer leash may add fields that narrow what a known scope covers, never widen it —
 * except `crit`, which names fields a reader must understand (a newer leash widening a
 * known scope, say a pattern as target): this version understands none, so an entry
 * with `crit` is not understood either.
 */
export function parseRevocation(fields: object, id: unknown): ParsedRevocation {
  const { scope, target, reason, at, by, crit } = fields as Readonly<Record<string, unknown>>;
  if (!isStreamId(id)) return refuse('bad_id', `bad id ${String(JSON.stringify(id)).slice(0, 40)}`);
  if (typeof scope !== 'string' || !SCOPE_SHAPE.test(scope)) return refuse('bad_scope', 'bad scope');
  const known = (REVOCATION_SCOPES as readonly string[]).includes(scope);
  const readable = typeof target === 'string' && target.length > 0 && target.length <= MAX_REVOCATION_TARGET;
  if (typeof at !== 'string' || !Number.isFinite(Date.parse(at))) return refuse('bad_at', 'bad at');
  const common = { id, reason: typeof reason === 'string' ? reason.slice(0, MAX_REVOCATION_REASON) : '', at, by: typeof by === 'string' ? by.slice(0, MAX_REVOCATION_BY) : '' };
  if (known && readable && crit === undefined) return { ok: true, revocation: { ...common, scope: scope as RevocationScope, target: target as string } };
  // Logged like a known revocation's target, so only one that would have been readable.
  const written = readable ? (target as string).slice(0, 128) : '';
  return { ok: true, revocation: { ...common, scope: 'all', target: ALL_TARGET, notUnderstood: { scope, target: written } } };
}

/** One entry of the revocation stream as XRANGE gives it; a refusal's message starts `stream entry <id>: `. */
export function parseRevocationEntry(id: string, flat: readonly string[]): ParsedRevocation {
  const r = parseRevocation(streamFields(flat), id);
  return r.ok ? r : { ...r, message: `stream entry ${id}: ${r.message}` };
}

/** One message of the revocation channel (JSON, id included); a refusal's message starts `pub/sub message`. */
export function parseRevocationMessage(message: string): ParsedRevocation {
  let body: unknown;
  try {
    body = JSON.parse(message);
  } catch {
    return refuse('not_json', 'pub/sub message is not JSON');
  }
  if (!body || typeof body !== 'object') return refuse('not_object', 'pub/sub message is not an object');
  const r = parseRevocation(body, String((body as { id?: unknown }).id));
  return r.ok ? r : { ...r, message: `pub/sub message: ${r.message}` };
}

/** The stream fields of a revocation, in the order they are written. */
export function revocationFields(r: Omit<Revocation, 'id'>): string[] {
  return ['scope', r.scope, 'target', r.target, 'reason', r.reason, 'at', r.at, 'by', r.by];
}

const refuse = (reason: RevocationRefusal, message: string): ParsedRevocation => ({ ok: false, reason, message });

// ---------------------------------------------------------------------------------------
// Redis keys (DESIGN §7: the prefix `leash:` is configurable)
// ---------------------------------------------------------------------------------------

/**
 * What a lease value must be for a sidecar to use it (lease-response.ts checks it too):
 * printable ASCII, spaces only inside (it goes into a header, a query or basic auth), at
 * most 16 KiB. Issuers refuse anything else, so no lease is stored for an unusable value.
 */
export const MAX_LEASE_VALUE = 16 * 1024;
/** A value that can go into a header, a query or basic auth without smuggling anything in: printable ASCII, spaces only inside. */
export const isHeaderSafe = (value: string): boolean => /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(value);
export const isUsableLeaseValue = (value: string): boolean => value.length <= MAX_LEASE_VALUE && isHeaderSafe(value);

export const DEFAULT_KEY_PREFIX = 'leash:';

/** What a configured prefix may hold. No braces: epochKeyOf's hash tag relies on it. */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9:_-]+$/;
export const KEY_PREFIX_RULE = 'must be letters, digits, ":", "_" or "-"';

/** The revocation stream, and the pub/sub channel of the same name. */
export const revocationsKey = (prefix: string = DEFAULT_KEY_PREFIX): string => `${prefix}revocations`;

/** The shared audit stream (DESIGN §8, docs/audit.md). */
export const auditKey = (prefix: string = DEFAULT_KEY_PREFIX): string => `${prefix}audit`;

/**
 * The key of a stream's EPOCH (src/bus/epoch.ts): in the stream's hash slot (same hash
 * tag), so on a Cluster a node that loses the stream loses the epoch with it, and never
 * one without the other.
 */
export function epochKeyOf(streamKey: string): string {
  return `${hashTagged(streamKey)}:epoch`;
}

/**
 * `key` rewritten so that its hash slot is unchanged and anything appended keeps it: a key
 * that already has a hash tag (`{…}` with something inside) as is, otherwise `{key}` (the
 * slot of `{key}…` is the slot of `key`). A key with a `}` but no usable tag cannot be
 * wrapped; it is returned as is (single node and Sentinel are unaffected).
 */
export function hashTagged(key: string): string {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return key;
  }
  return key.includes('}') ? key : `{${key}}`;
}

/**
 * The authority's lease store (src/authority/leases/redis.ts):
 *   lease:<id>                          JSON LeaseRecord (fingerprint, never a value), PXAT = expiresAtMs
 *   leases:by-instance:<instance>       ZSET id → expiresAtMs; key PEXPIREAT = its highest score
 *   leases:by-credential:<credential>   ZSET id → expiresAtMs; same
 *   leases:all                          ZSET id → expiresAtMs; same (unfiltered listing)
 *   join:<keyed hash hex of the token>  JSON JoinTokenRecord (with its MAC), PXAT = expiresAtMs, taken with GETDEL
 *   identity:<identity>                 end (ms) of its longest certificate, PXAT = that end
 *   revoked:instance:<identity>         end (ms) of the revocation mark, PXAT = that end
 */
export function storeKeys(prefix: string = DEFAULT_KEY_PREFIX) {
  return {
    lease: (id: string) => `${prefix}lease:${id}`,
    byInstance: (instance: string) => `${prefix}leases:by-instance:${instance}`,
    byCredential: (credential: string) => `${prefix}leases:by-credential:${credential}`,
    all: `${prefix}leases:all`,
    joinToken: (hash: string) => `${prefix}join:${hash}`,
    identity: (identity: string) => `${prefix}identity:${identity}`,
    revokedInstance: (identity: string) => `${prefix}revoked:instance:${identity}`,
  };
}

// ---------------------------------------------------------------------------------------
// Stream entries (XRANGE replies) and the audit stream (docs/audit.md)
// ---------------------------------------------------------------------------------------

/** XRANGE's flat `[field, value, field, value, …]` as an object (a trailing odd field is dropped; a repeated one keeps the last value). */
export function streamFields(flat: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

/**
 * One entry of the audit stream, every field a string as XRANGE gives it: `event` and `at`
 * first, `v` (schema version), then the event's fields (docs/audit.md). Readers skip what
 * they do not understand; nothing is refused.
 */
export type AuditEntry = Readonly<Record<string, string>>;

/**
 * The audit schema version this leash writes and reads (docs/audit.md: fields are added
 * within a version, change meaning only with a new one). An entry without `v` is taken as
 * this one; an entry of another version is shown as written, never read as this one.
 */
export const AUDIT_VERSION = '1';
export const isReadableAuditVersion = (e: AuditEntry): boolean => e.v === undefined || e.v === AUDIT_VERSION;

/** An audit stream entry with its stream id as `id` (an entry's own field of that name wins). */
export function parseAuditEntry(id: string, flat: readonly string[]): Record<string, string> {
  return { id, ...streamFields(flat) };
}

// ---------------------------------------------------------------------------------------
// JWT claims (docs/verify.md)
// ---------------------------------------------------------------------------------------

/** The claims leash adds to the JWTs its jwt issuer signs, besides iss, sub, aud, jti, iat, nbf, exp, scope. */
export const CLAIMS = {
  /** The credential name, so leash/verify can apply `credential` revocations. */
  credential: 'leash_cred',
  /** Issue time to the millisecond, consistent with `iat` (which has whole seconds). */
  issuedAtMs: 'leash_iat_ms',
} as const;

/** The payload of a leash JWT: sub is the instance's SPIFFE ID, jti the lease id. */
export interface LeashTokenClaims {
  scope?: string;
  iss?: string;
  sub: string;
  aud: string | string[];
  jti: string;
  iat: number;
  nbf: number;
  exp: number;
  [CLAIMS.credential]: string;
  [CLAIMS.issuedAtMs]: number;
}

export interface LeashTokenFacts {
  sub: string;
  jti: string;
  iat: number;
  exp: number;
  /** undefined for tokens from an authority that does not set leash_cred. */
  credential: string | undefined;
  /**
   * When it was issued, ms: leash_iat_ms when it is consistent with iat, else the earliest
   * instant of iat's second (a token issued in the same second as a revocation, even just
   * after it, then counts as issued before it: fail closed).
   */
  issuedMs: number;
}

/** The claims a verifier acts on, from a payload whose signature has been verified; undefined when one has the wrong type. */
export function leashTokenFacts(payload: Readonly<Record<string, unknown>>): LeashTokenFacts | undefined {
  const { sub, jti, iat, exp } = payload;
  const credential = payload[CLAIMS.credential];
  if (typeof sub !== 'string' || typeof jti !== 'string' || typeof iat !== 'number' || typeof exp !== 'number' || (credential !== undefined && typeof credential !== 'string')) {
    return undefined;
  }
  const iatMs = payload[CLAIMS.issuedAtMs];
  const issuedMs = typeof iatMs === 'number' && Number.isSafeInteger(iatMs) && Math.floor(iatMs / 1000) === iat ? iatMs : iat * 1000;
  return { sub, jti, iat, exp, credential, issuedMs };
}
