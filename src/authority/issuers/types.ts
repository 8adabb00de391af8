/**
 * An issuer mints the secret behind a lease. One instance per configured credential;
 * `issue` is called once per lease (per-instance credentials: no two leases share a
 * value unless the source is static). Errors are IssuerError with a stable code.
 */
export interface IssueRequest {
  /** The caller's SPIFFE identity (jwt: `sub`). */
  identity: string;
  /** Credential name from config. */
  credential: string;
  leaseId: string;
  /** The longest TTL policy and config allow, ms. The issuer may give less (e.g. oauth2 expires_in). */
  maxTtlMs: number;
  /** Wall-clock now, ms (injected for tests). */
  nowMs: number;
}

export interface Issued {
  value: string;
  /** Version of the underlying secret (static: its fingerprint; jwt: the jti). */
  version: string;
  issuedAtMs: number;
  expiresAtMs: number;
}

export interface Issuer {
  readonly kind: 'jwt' | 'static' | 'oauth2' | 'exec';
  issue(req: IssueRequest): Promise<Issued>;
  close(): Promise<void>;
}
