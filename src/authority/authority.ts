import { randomBytes } from 'node:crypto';
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { fingerprint } from '../core/fingerprint.js';
import type { BootstrapRequest, IdentityResponse, LeaseRecord, LeaseRequest, LeaseResponse, RenewIdentityRequest } from '../core/protocol.js';
import type { Audit } from '../telemetry/audit.js';
import type { AuthorityMetrics } from '../telemetry/authority-metrics.js';
import type { CertificateAuthority } from './ca/ca.js';
import { verifyCsr } from './ca/csr.js';
import { CaInvalidError } from './ca/errors.js';
import { verifyClientCertificate } from './ca/verify.js';
import { AuthorityError, badRequest, forbidden, notFound, unauthenticated } from './errors.js';
import type { Issuer } from './issuers/types.js';
import { JoinTokenError, JoinTokenRequestError } from './leases/errors.js';
import type { JoinTokens } from './leases/join-tokens.js';
import type { AuthorityStore, LeaseFilter } from './leases/types.js';
import { decide, type CompiledPolicy } from './policy/policy.js';

/**
 * The authority's decisions, independent of HTTP: who an instance is (bootstrap and
 * renewal of identity certificates), which credentials it may lease (policy), issuing
 * and releasing leases, join tokens for admins. Stateless apart from the store, so any
 * number of replicas can serve one fleet.
 */
export interface AuthorityDeps {
  trustDomain: string;
  ca: CertificateAuthority;
  issuers: ReadonlyMap<string, { issuer: Issuer; ttlMs: number }>;
  store: AuthorityStore;
  joinTokens: JoinTokens;
  policy: CompiledPolicy;
  identityTtlMs: number;
  joinTokenMaxTtlMs: number;
  metrics: AuthorityMetrics;
  audit: Audit;
  logger: Logger;
  clock: Clock;
}

const LEASE_ID = /^[A-Za-z0-9_-]{1,128}$/;

export class Authority {
  constructor(private readonly d: AuthorityDeps) {}

  /** The identity behind a TLS client certificate, verified with Node's crypto (PITFALLS: never forge). */
  identify(peer: X509Certificate | undefined): string {
    return this.verifyPeer(peer).identity;
  }

  /** As identify, with the certificate's end, so a caller may remember the answer for one TLS connection. */
  verifyPeer(peer: X509Certificate | undefined): { identity: string; notAfterMs: number } {
    if (!peer) throw unauthenticated();
    try {
      const v = verifyClientCertificate(peer, this.d.ca.certificate, this.d.trustDomain, this.d.clock.wallMs());
      return { identity: v.identity, notAfterMs: v.notAfter.getTime() };
    } catch (err) {
      throw unauthenticated(`client certificate refused: ${(err as Error).message}`);
    }
  }

  now(): number {
    return this.d.clock.wallMs();
  }

  async bootstrap(body: BootstrapRequest): Promise<IdentityResponse> {
    if (typeof body?.joinToken !== 'string' || typeof body.csr !== 'string') throw badRequest('joinToken and csr are required');
    // Check the CSR before spending the single-use token on it.
    try {
      verifyCsr(body.csr);
    } catch (err) {
      throw badRequest(`certificate request refused: ${(err as Error).message}`);
    }
    let name: string;
    try {
      name = await this.d.joinTokens.redeem(body.joinToken, this.d.clock.wallMs());
    } catch (err) {
      this.d.metrics.bootstrap('join_token', 'failure');
      // Only a bad token is the caller's fault; a store outage stays a retryable 503.
      if (err instanceof JoinTokenError) throw new AuthorityError('LEASH_ERR_UNAUTHENTICATED', 401, err.message);
      throw err;
    }
    const identity = `spiffe://${this.d.trustDomain}/join/${name}`;
    const answer = this.sign(body.csr, identity);
    this.d.metrics.bootstrap('join_token', 'success');
    this.d.audit.emit('instance.bootstrapped', { identity, instance: identity });
    return answer;
  }

  renewIdentity(identity: string, body: RenewIdentityRequest): IdentityResponse {
    if (typeof body?.csr !== 'string') throw badRequest('csr is required');
    const answer = this.sign(body.csr, identity);
    this.d.metrics.bootstrap('renew', 'success');
    this.d.audit.emit('instance.renewed', { identity, instance: identity });
    return answer;
  }

  private sign(csr: string, identity: string): IdentityResponse {
    const now = this.d.clock.wallMs();
    let signed: { certificate: string; notAfter: Date };
    try {
      signed = this.d.ca.signCsr(csr, identity, this.d.identityTtlMs, now);
    } catch (err) {
      // Our own CA having expired is the authority's fault, not the caller's.
      if (err instanceof CaInvalidError) throw new AuthorityError('LEASH_ERR_INTERNAL', 500, 'the authority CA cannot sign now', {}, { cause: err });
      throw badRequest(`certificate request refused: ${(err as Error).message}`);
    }
    const expiresAt = signed.notAfter.getTime();
    return {
      identity,
      certificate: signed.certificate,
      ca: this.d.ca.caPem,
      issuedAt: new Date(now).toISOString(),
      expiresAt: new Date(expiresAt).toISOString(),
      ttlSeconds: Math.max(0, Math.round(expiresAt - now) / 1000),
    };
  }

  async lease(identity: string, body: LeaseRequest): Promise<LeaseResponse> {
    const started = performance.now();
    const name = body?.credential;
    if (typeof name !== 'string') throw badRequest('credential is required');
    const entry = this.d.issuers.get(name);
    const verdict = decide(this.d.policy, identity, name);
    if (!entry || !verdict.allowed) {
      // Unknown and forbidden look the same to the caller: a name is not an oracle.
      // Metric labels stay bounded: a caller cannot mint series with made-up names.
      this.d.metrics.policyDenied(entry ? name : '_unknown');
      this.d.metrics.leaseIssued(entry ? name : '_unknown', 'denied');
      this.d.audit.emit('policy.denied', { identity, credential: name.slice(0, 64), reason: entry ? (verdict as { reason: string }).reason : 'no such credential' });
      throw forbidden(`identity may not lease credential "${name.slice(0, 64)}"`);
    }
    let maxTtlMs = Math.min(verdict.maxTtlMs, entry.ttlMs);
    if (typeof body.ttlSeconds === 'number' && body.ttlSeconds > 0) maxTtlMs = Math.min(maxTtlMs, body.ttlSeconds * 1000);
    const leaseId = randomBytes(16).toString('base64url');
    const now = this.d.clock.wallMs();
    let issued;
    try {
      issued = await entry.issuer.issue({ identity, credential: name, leaseId, maxTtlMs, nowMs: now });
    } catch (err) {
      this.d.metrics.leaseIssued(name, 'failed');
      this.d.logger.warn({ credential: name, err }, 'issuer failed');
      throw new AuthorityError('LEASH_ERR_ISSUE_FAILED', 503, `credential "${name}" could not be issued now`, {}, { cause: err });
    }
    const fp = fingerprint(issued.value);
    const record: LeaseRecord = {
      id: leaseId,
      instance: identity,
      credential: name,
      fingerprint: fp,
      version: issued.version,
      issuedAtMs: issued.issuedAtMs,
      expiresAtMs: issued.expiresAtMs,
    };
    await this.d.store.putLease(record);
    this.d.metrics.leaseIssued(name, 'issued', (performance.now() - started) / 1000);
    this.d.audit.emit('lease.issued', { identity, credential: name, lease: leaseId, fingerprint: fp });
    return {
      lease: leaseId,
      credential: name,
      value: issued.value,
      fingerprint: fp,
      version: issued.version,
      issuedAt: new Date(issued.issuedAtMs).toISOString(),
      expiresAt: new Date(issued.expiresAtMs).toISOString(),
      // Millisecond precision: a 2 s JWT whose exp was floored to the second may have 1.2 s left.
      ttlSeconds: Math.max(0, Math.round(issued.expiresAtMs - now) / 1000),
    };
  }

  /** Release a lease. Another instance's lease is "not found": identities cannot touch each other's. */
  async release(identity: string, leaseId: string): Promise<void> {
    if (!LEASE_ID.test(leaseId)) throw notFound('no such lease');
    const record = await this.d.store.getLease(leaseId);
    if (!record || record.instance !== identity) throw notFound('no such lease');
    await this.d.store.deleteLease(leaseId);
    this.d.audit.emit('lease.revoked', { identity, credential: record.credential, lease: leaseId, fingerprint: record.fingerprint, reason: 'released' });
  }

  async createJoinToken(actor: string, identityName: string, ttlMs: number): Promise<{ token: string; expiresAt: string }> {
    if (!(ttlMs > 0) || ttlMs > this.d.joinTokenMaxTtlMs) throw badRequest(`ttl must be positive and at most ${this.d.joinTokenMaxTtlMs / 1000}s`);
    const now = this.d.clock.wallMs();
    let token: string;
    try {
      token = await this.d.joinTokens.create(identityName, ttlMs, now);
    } catch (err) {
      if (err instanceof JoinTokenRequestError) throw badRequest(err.message);
      throw err;
    }
    this.d.audit.emit('token.created', { identity: `spiffe://${this.d.trustDomain}/join/${identityName}`, by: actor });
    return { token, expiresAt: new Date(now + ttlMs).toISOString() };
  }

  listLeases(filter: LeaseFilter): Promise<LeaseRecord[]> {
    return this.d.store.listLeases(filter);
  }
}
