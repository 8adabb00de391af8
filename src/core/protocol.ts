/**
 * Wire types between sidecar (and admin CLI) and authority: JSON over HTTPS. Shared by
 * both sides, imported by neither's internals (DESIGN §9). Every field the sidecar
 * relies on is validated on receipt (src/sidecar/credentials/lease-response.ts); a
 * malformed answer is rejected, never half-used.
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
  scope: 'lease' | 'instance' | 'credential' | 'all';
  /** Lease id, SPIFFE ID (or `join:NAME`), credential name, or '*' for all. */
  target: string;
  reason?: string;
}

/** A published revocation (DESIGN §7), as in the stream `leash:revocations`. */
export interface RevocationEntry {
  /** Stream id `<ms>-<seq>`. */
  id: string;
  scope: 'lease' | 'instance' | 'credential' | 'all';
  /** For instance: the SPIFFE ID (a `join:NAME` request is answered with the full ID). */
  target: string;
  reason: string;
  at: string; // ISO
  by: string;
}

export interface RevokeResponse {
  revocation: RevocationEntry;
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
  events: Array<Record<string, string>>;
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
