import { newLeaseId } from './leases/lease-id.js';
import type { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { fingerprint } from '../core/fingerprint.js';
import type { TraceResponse } from '../core/protocol.js';
import type { BootstrapRequest, IdentityResponse, LeaseRecord, LeaseRequest, LeaseResponse, RenewIdentityRequest } from '../core/protocol.js';
import { ALL_TARGET, isReadableAuditVersion, isUsableLeaseValue, MAX_LEASE_VALUE, MAX_REVOCATION_TARGET, REVOCATION_SCOPES, type Revocation, type RevocationScope } from '../core/protocol.js';
import type { RevocationPublisher } from '../bus/types.js';
import type { Audit } from '../telemetry/audit.js';
import { summariseTrace } from './trace.js';
import type { AuthorityMetrics } from '../telemetry/authority-metrics.js';
import type { CertificateAuthority } from '../pki/ca.js';
import { verifyCsr } from '../pki/csr.js';
import { parseSpiffeId } from '../pki/spiffe.js';
import { CaInvalidError } from '../pki/errors.js';
import { verifyClientCertificate } from '../pki/verify.js';
import { AuthorityError, badRequest, forbidden, notFound, rateLimited, unauthenticated } from './errors.js';
import type { KeyedRateLimiter } from './rate-limit.js';
import type { Issuer } from './issuers/types.js';
import { IssuerError } from './issuers/errors.js';
import { JoinTokenRequestError } from './leases/errors.js';
import { isAttestationKind, renewsOverMtls, type AttestationKind, type AttestationVerifier } from '../core/attestation.js';
import { JoinTokenVerifier } from './attestors/join-token.js';
import { isValidIdentityName, type JoinTokens } from './leases/join-tokens.js';
import type { AuthorityStore, LeaseFilter } from './leases/types.js';
import { decide, type CompiledPolicy } from './policy/policy.js';
import type { RevocationMemory } from './revocation-memory.js';

/**
 * The authority's decisions, independent of HTTP: who an instance is (bootstrap and
 * renewal of identity certificates), which credentials it may lease (policy), issuing
 * and releasing leases, join tokens for admins. Stateless apart from the store, so any
 * number of replicas can serve one fleet.
 */
export interface AuthorityDeps {
  trustDomain: string;
  ca: CertificateAuthority;
  /** CAs whose client certificates are accepted: `ca` and config `ca.trustedCertFiles`. Default: `ca` alone. */
  trustedCas?: readonly X509Certificate[];
  issuers: ReadonlyMap<string, { issuer: Issuer; ttlMs: number }>;
  store: AuthorityStore;
  joinTokens: JoinTokens;
  /** Node attestors besides join tokens (the Kubernetes one when configured). */
  attestors?: readonly AttestationVerifier[];
  policy: CompiledPolicy;
  identityTtlMs: number;
  joinTokenMaxTtlMs: number;
  metrics: AuthorityMetrics;
  /** Where revocations are published (DESIGN §7): Redis stream + pub/sub, or the in-process bus. */
  revocations: RevocationPublisher;
  audit: Audit;
  /** The audit stream, when Redis keeps one: events naming a fingerprint, oldest first. */
  auditSearch?: (fingerprint: string, leaseIds: string[]) => Promise<Array<Record<string, string>>>;
  logger: Logger;
  clock: Clock;
  /** Lease requests per identity (rate-limit.ts); absent: no limit. Per replica: N replicas allow up to N times as many. */
  leaseRateLimit?: KeyedRateLimiter;
  /**
   * Redis' clock now, as last sampled (undefined: not known yet). A certificate is refused
   * once it has expired by this clock too: a replica whose clock is behind would otherwise
   * accept a certificate past its end — and past the revocation mark, which Redis expires
   * by its own clock (lasting to the certificate's end + 5 min).
   */
  storeNow?: () => number | undefined;
  /** Bootstrap requests per client address, before any evidence is checked or spent; absent: no limit. */
  bootstrapRateLimit?: KeyedRateLimiter;
  /**
   * What this replica revoked, for re-seeding a Redis that came back empty (see
   * revocation-memory.ts). Absent: nothing is remembered (in-memory store and bus).
   */
  revocationMemory?: RevocationMemory;
  /**
   * Has Redis been reset (restarted empty) since last looked? When it has, the marks and
   * revocations this replica remembers are written back before this resolves (true).
   * Asked when the store says an identity is not revoked: that answer may come from an
   * emptied Redis. Absent: no Redis.
   */
  resetCheck?: {
    check(): Promise<boolean>;
    resets(): number;
    /**
     * Fast path, only when the store's reads and `read` share one connection (so a `read`
     * issued after a store read runs after it): the epoch as of the last finished check
     * (write-back included), and a read of the epoch now.
     */
    settled?(): string | null | undefined;
    read?(): Promise<string | null>;
  };
}

const LEASE_ID = /^[A-Za-z0-9_-]{1,128}$/;
/** Printable, no control characters; what the stream's parser keeps (512). */
const REASON = /^[^\x00-\x1f\x7f]{0,512}$/;
/** How much longer than one identity TTL an instance's revocation mark lasts (in-flight renewals, replica clock skew). */
const MARK_MARGIN_MS = 5 * 60_000;
/** Leases deleted concurrently by one revocation. */
const DELETE_BATCH = 256;

export interface RevokeResult {
  revocation: Revocation;
  /** Leases deleted from the store by this revocation. */
  leases: number;
  /** Set when the target was unknown here and the revocation was published anyway. */
  warning?: string;
}

/**
 * After Redis lost its data the authority cannot tell a lease or instance that never
 * existed from one it forgot, and a revocation of something that does not exist harms
 * nothing: the revocation goes out anyway, and the answer says so.
 */
export const UNKNOWN_LEASE = 'unknown lease: revocation published anyway';
export const UNKNOWN_INSTANCE = 'unknown instance: revoked and published anyway';
/** How long a revocation waits for Redis' replicas to confirm it (WAIT). */
const REPLICATION_WAIT_MS = 500;
export const NOT_REPLICATED = (acked: number, replicas: number): string =>
  `recorded on the Redis master, but ${Number.isFinite(replicas) ? `${acked} of ${replicas}` : 'not all'} replicas confirmed it within ${REPLICATION_WAIT_MS} ms: a failover now would lose it (check replication, then revoke again)`;
/** Revoked and published, but the store answered an error when its lease records were to be deleted. */
export const LEASES_NOT_DELETED = 'lease records could not be listed or deleted now (store error); they expire on their own';

/** A store read that failed (an error from Redis): a revocation goes ahead without what it would have told. */
const UNREADABLE = Symbol('unreadable');
const unlessUnreadable = <T>(p: Promise<T>): Promise<T | typeof UNREADABLE> => p.catch(() => UNREADABLE);

/**
 * How a credential name the authority does not define appears in audit events: never as
 * given, as `unknown:sha256:<12 hex>` of the name (the sidecar's /status shows the same
 * fingerprint for a name not yet granted, so the two can be matched).
 */
export const unknownCredential = (name: string): string => `unknown:${fingerprint(name)}`;

/**
 * Pure: the leases a credential/all revocation at `cutoffMs` takes back — those issued up to
 * it, the same rule sidecars and leash/verify apply (DESIGN §7), not the ones leased after.
 */
export function revokedBy(records: readonly LeaseRecord[], cutoffMs: number): LeaseRecord[] {
  return Number.isFinite(cutoffMs) ? records.filter((r) => r.issuedAtMs <= cutoffMs) : [...records];
}

/** Refused: the identity is revoked. 401, so a sidecar drops it (it treats 401/403 as refused). */
const revokedIdentity = () => unauthenticated('identity revoked');

/** The evidence in a bootstrap request, in either shape (protocol.ts); undefined when neither is well-formed. */
function attestationOf(body: BootstrapRequest | undefined): { kind: string; token: string } | undefined {
  const a = body?.attestation as { kind?: unknown; token?: unknown } | undefined;
  if (a && typeof a === 'object') return typeof a.kind === 'string' && typeof a.token === 'string' ? { kind: a.kind, token: a.token } : undefined;
  return typeof body?.joinToken === 'string' ? { kind: 'join_token', token: body.joinToken } : undefined;
}

export class Authority {
  /** Node attestors by kind: join tokens always, others as configured (assemble.ts). */
  private readonly verifiers: ReadonlyMap<AttestationKind, AttestationVerifier>;

  constructor(private readonly d: AuthorityDeps) {
    const verifiers = new Map<AttestationKind, AttestationVerifier>([['join_token', new JoinTokenVerifier(d.joinTokens, d.clock)]]);
    for (const v of d.attestors ?? []) verifiers.set(v.kind, v);
    this.verifiers = verifiers;
  }

  /** The identity behind a TLS client certificate, verified with Node's crypto (docs/pitfalls.md: never forge). */
  identify(peer: X509Certificate | undefined): string {
    return this.verifyPeer(peer).identity;
  }

  /** As identify, with the certificate's end, so a caller may remember the answer for one TLS connection. */
  verifyPeer(peer: X509Certificate | undefined): { identity: string; notAfterMs: number } {
    if (!peer) throw unauthenticated();
    let v: ReturnType<typeof verifyClientCertificate>;
    try {
      v = verifyClientCertificate(peer, this.d.trustedCas ?? this.d.ca.certificate, this.d.trustDomain, this.d.clock.wallMs());
    } catch (err) {
      throw unauthenticated(`client certificate refused: ${(err as Error).message}`);
    }
    const storeNow = this.d.storeNow?.();
    if (storeNow !== undefined && storeNow >= v.notAfter.getTime()) {
      throw unauthenticated(`client certificate refused: expired at ${v.notAfter.toISOString()} by the store's clock (this replica's clock is behind Redis', or Redis' is ahead: sync both with NTP)`);
    }
    // During a CA rotation: which CA the fleet's certificates still come from (by signature:
    // two generations of a CA often share a subject name).
    this.d.metrics.clientCertificate(this.d.trustedCas && this.d.trustedCas.length > 1 && !peer.verify(this.d.ca.certificate.publicKey) ? 'trusted' : 'signing');
    return { identity: v.identity, notAfterMs: v.notAfter.getTime() };
  }

  /** Now, for certificate lifetimes: the later of this replica's clock and Redis' (storeNow). */
  now(): number {
    const wall = this.d.clock.wallMs();
    return Math.max(wall, this.d.storeNow?.() ?? wall);
  }

  /** `peer`: the client's address, which bootstrap requests are rate-limited by (no identity exists yet). */
  async bootstrap(body: BootstrapRequest, peer = 'unknown'): Promise<IdentityResponse> {
    // First, before the CSR's signature check, a TokenReview to the API server or a join
    // token spent: a refused call costs nothing and spends nothing (the token stays usable).
    const attestation = attestationOf(body); // a parse, no I/O
    const rate = this.d.bootstrapRateLimit?.take(peer);
    if (rate && !rate.allowed) {
      if (isAttestationKind(attestation?.kind)) this.d.metrics.bootstrap(attestation.kind, 'rate_limited');
      if (rate.first) this.d.logger.warn({ peer, retryAfterSeconds: rate.retryAfterSeconds }, 'bootstrap requests from this address are over limits.bootstraps; refusing with 429');
      throw rateLimited(rate.retryAfterSeconds, 'bootstrap');
    }
    if (!attestation || typeof body.csr !== 'string') throw badRequest('attestation ({ kind, token }) or joinToken, and csr, are required');
    // Check the CSR before spending the evidence (a join token is single-use) on it.
    try {
      verifyCsr(body.csr);
    } catch (err) {
      throw badRequest(`certificate request refused: ${(err as Error).message}`);
    }
    const method = isAttestationKind(attestation.kind) ? attestation.kind : undefined;
    const verifier = method && this.verifiers.get(method);
    if (!method || !verifier) {
      if (method) this.d.metrics.bootstrap(method, 'failure');
      throw unauthenticated(`attestation kind ${JSON.stringify(String(attestation.kind).slice(0, 32))} is not enabled on this authority`);
    }
    let path: string;
    try {
      ({ path } = await verifier.verify(attestation.token));
    } catch (err) {
      this.d.metrics.bootstrap(method, 'failure');
      // Only bad evidence is the caller's fault (401); an outage (store, API server) stays a retryable 503.
      throw err;
    }
    const identity = `spiffe://${this.d.trustDomain}${path}`;
    // A revoked identity cannot come back while its mark lasts, not even with fresh evidence.
    if (await this.isRevoked(identity)) {
      this.d.metrics.bootstrap(method, 'failure');
      this.d.audit.emit('policy.denied', { identity, instance: identity, reason: 'identity revoked' });
      throw revokedIdentity();
    }
    const answer = this.sign(body.csr, identity);
    await this.d.store.putIdentity(identity, Date.parse(answer.expiresAt));
    // As in renewIdentity: a revocation that landed while this bootstrap was past its check.
    if (await this.isRevoked(identity)) {
      this.d.metrics.bootstrap(method, 'failure');
      throw revokedIdentity();
    }
    this.d.metrics.bootstrap(method, 'success');
    this.d.audit.emit('instance.bootstrapped', { identity, instance: identity });
    return answer;
  }

  async renewIdentity(identity: string, body: RenewIdentityRequest): Promise<IdentityResponse> {
    if (typeof body?.csr !== 'string') throw badRequest('csr is required');
    if (!renewsOverMtls(identity.slice(`spiffe://${this.d.trustDomain}`.length))) {
      this.d.metrics.bootstrap('renew', 'failure');
      throw unauthenticated('a Kubernetes identity is renewed by attesting again with the pod\'s current token, not with its certificate');
    }
    await this.assertNotRevoked(identity, 'renew');
    // Renewals share the identity's lease budget (limits.leases): a sidecar renews at half
    // its certificate's life, so a loop is the only thing this stops — one that would sign
    // certificates at will and push the fleet's history out of the capped audit stream.
    const rate = this.d.leaseRateLimit?.take(`renew ${identity}`);
    if (rate && !rate.allowed) {
      this.d.metrics.bootstrap('renew', 'failure');
      if (rate.first) this.d.audit.emit('policy.denied', { identity, instance: identity, reason: 'renewals rate limited' });
      throw rateLimited(rate.retryAfterSeconds, 'renew');
    }
    const answer = this.sign(body.csr, identity);
    await this.d.store.putIdentity(identity, Date.parse(answer.expiresAt));
    // A revocation that landed while this renewal was past its check (its mark computed before
    // this certificate was signed) must not let the certificate out: look again now it is recorded.
    await this.assertNotRevoked(identity, 'renew');
    this.d.metrics.bootstrap('renew', 'success');
    this.d.audit.emit('instance.renewed', { identity, instance: identity });
    return answer;
  }

  /**
   * Every call made with an identity certificate checks the revocation mark, each time:
   * the server caches the certificate's verification per connection, never this answer.
   */
  private async assertNotRevoked(identity: string, method?: 'renew'): Promise<void> {
    if (!(await this.isRevoked(identity))) return;
    if (method) this.d.metrics.bootstrap(method, 'failure');
    throw revokedIdentity();
  }

  /**
   * The store's answer, unless Redis came back empty since we last looked: then the marks
   * this replica remembers are written back first and the store is asked again (an
   * emptied Redis would otherwise let a revoked instance's valid certificate lease again).
   */
  private async isRevoked(identity: string): Promise<boolean> {
    const resetsBefore = this.d.resetCheck?.resets();
    // Fast path: the epoch read goes out right behind the store's read, on the same
    // connection, so Redis runs it after (one round trip for both with auto-pipelining).
    // If it still holds the epoch settled before the store was asked — a check's write-back
    // included — no reset happened before the store answered: the answer stands. Anything
    // else (changed, absent, never looked, the read failing) takes the full check below.
    const settled = this.d.resetCheck?.settled?.();
    const revoked = this.d.store.isIdentityRevoked(identity);
    const now = settled ? this.d.resetCheck?.read?.() : undefined;
    now?.catch(() => undefined); // its failure only means the full check
    if (await revoked) return true;
    if (!this.d.resetCheck) return false;
    if (now && (await now.catch(() => undefined)) === settled) return false;
    let reset: boolean;
    try {
      // Resolves once any write-back under way has finished (checks are shared).
      reset = await this.d.resetCheck.check();
    } catch (err) {
      // Fail closed: whether the answer above is still true cannot be known now.
      throw new AuthorityError('LEASH_ERR_STORE', 503, 'the store is unavailable; retry', {}, { cause: err });
    }
    // A reset noticed by another check while the store was being asked counts too: the
    // answer may predate that check's write-back.
    if (!reset && this.d.resetCheck.resets() === resetsBefore) return false;
    return this.d.store.isIdentityRevoked(identity);
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
    // A revoked identity is told so (401: its sidecar drops what it holds) whatever its
    // rate: a 429 would be retried with the revoked lease kept. The limit comes next,
    // before the policy, any issuer call or store write: what it protects.
    await this.assertNotRevoked(identity);
    const rate = this.d.leaseRateLimit?.take(identity);
    if (rate && !rate.allowed) {
      // Metric labels stay bounded and a name the authority does not define is never
      // written as given (it may be a pasted secret), as for policy denials below.
      const known = this.d.issuers.has(name);
      this.d.metrics.leaseIssued(known ? name : '_unknown', 'rate_limited');
      // One audit event when an identity starts being refused, not one per refused call:
      // a loop at thousands of calls a second must not flood the audit stream.
      if (rate.first) this.d.audit.emit('policy.denied', { identity, credential: known ? name : unknownCredential(name), reason: 'rate limited' });
      throw rateLimited(rate.retryAfterSeconds);
    }
    const entry = this.d.issuers.get(name);
    const verdict = decide(this.d.policy, identity, name);
    if (!entry || !verdict.allowed) {
      // Unknown and forbidden look the same to the caller: a name is not an oracle.
      // Metric labels stay bounded: a caller cannot mint series with made-up names.
      this.d.metrics.policyDenied(entry ? name : '_unknown');
      this.d.metrics.leaseIssued(entry ? name : '_unknown', 'denied');
      // A name the authority does not define is not written to the audit stream: it may be a
      // secret pasted in as a lease name. Its fingerprint still correlates repeated attempts.
      this.d.audit.emit(
        'policy.denied',
        entry
          ? { identity, credential: name, reason: (verdict as { reason: string }).reason }
          : { identity, credential: unknownCredential(name), reason: 'no such credential' },
      );
      // Neither is it echoed to the caller (whose agent may read the sidecar's logs and status).
      throw forbidden('identity may not lease the requested credential');
    }
    let maxTtlMs = Math.min(verdict.maxTtlMs, entry.ttlMs);
    if (typeof body.ttlSeconds === 'number' && body.ttlSeconds > 0) maxTtlMs = Math.min(maxTtlMs, body.ttlSeconds * 1000);
    const leaseId = newLeaseId();
    const now = this.d.clock.wallMs();
    let issued;
    try {
      issued = await entry.issuer.issue({ identity, credential: name, leaseId, maxTtlMs, nowMs: now });
      // Every issuer checks its own values; this is the one place any issuer's value passes,
      // so one that no sidecar could inject is never stored, audited or answered.
      if (!isUsableLeaseValue(issued.value)) throw new IssuerError('LEASH_ERR_ISSUER_RESPONSE', `issuer of "${name}" gave a value that is not printable ASCII of at most ${MAX_LEASE_VALUE} characters`, { credential: name });
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
    // A revocation of this identity that landed while the lease was being issued may have
    // listed its leases before this one was stored: look again now it is, and take it back.
    // (A store that can do both in one round trip does: putLeaseThenCheckRevoked.)
    const store = this.d.store;
    const revokedMeanwhile = store.putLeaseThenCheckRevoked
      ? await store.putLeaseThenCheckRevoked(record)
      : (await store.putLease(record), await store.isIdentityRevoked(identity));
    if (revokedMeanwhile) {
      await this.d.store.deleteLease(leaseId);
      this.d.metrics.leaseIssued(name, 'denied');
      throw revokedIdentity();
    }
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
    await this.assertNotRevoked(identity);
    if (!LEASE_ID.test(leaseId)) throw notFound('no such lease');
    const record = await this.d.store.getLease(leaseId);
    if (!record || record.instance !== identity) throw notFound('no such lease');
    await this.d.store.deleteLease(leaseId);
    // A holder letting go (the predecessor after a rotation, every lease at shutdown) is
    // routine: `lease.released`, so that `lease.revoked` stays an alert-worthy admin action.
    this.d.audit.emit('lease.released', { identity, credential: record.credential, lease: leaseId, fingerprint: record.fingerprint });
  }

  async createJoinToken(actor: string, identityName: string, ttlMs: number): Promise<{ token: string; expiresAt: string }> {
    if (!(ttlMs > 0) || ttlMs > this.d.joinTokenMaxTtlMs) throw badRequest(`ttl must be positive and at most ${this.d.joinTokenMaxTtlMs / 1000}s`);
    // The later of our clock and Redis': Redis expires the token (PXAT) by its own, so a
    // replica whose clock is behind by more than the TTL made tokens that were gone at once.
    const now = this.now();
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

  /** `leash trace`: which lease/instance held a value (by fingerprint) and what it did. */
  async trace(fingerprint: string): Promise<TraceResponse> {
    if (!/^sha256:[0-9a-f]{12}$/.test(fingerprint)) throw badRequest('fingerprint must be sha256:<12 hex>');
    const leases = (await this.d.store.listLeases({})).filter((l) => l.fingerprint === fingerprint);
    const found = this.d.auditSearch ? await this.d.auditSearch(fingerprint, leases.map((l) => l.id)) : [];
    const { holders, operations } = summariseTrace(fingerprint, leases, found);
    // `usage` summaries come back as operations, added up; the events are the lifecycle, and
    // whatever a newer audit schema wrote (usage included: not added up, shown as written).
    const events = found.filter((e) => e.event !== 'usage' || !isReadableAuditVersion(e));
    return { fingerprint, leases, events, auditStream: this.d.auditSearch !== undefined, holders, operations };
  }

  listLeases(filter: LeaseFilter): Promise<LeaseRecord[]> {
    return this.d.store.listLeases(filter);
  }

  /**
   * Revoke (DESIGN §7), by an admin `actor`: record it in the store (the authority refuses
   * what is revoked from now on, on every replica), publish it on the bus (sidecars and
   * verifiers apply it), delete the leases it covers, count and audit it.
   *   lease       target = lease id (400 unless it could be one). The lease is deleted. An
   *               unknown one (expired, or forgotten by a Redis that lost its data) is
   *               revoked anyway: published, answered with a warning (UNKNOWN_LEASE).
   *   instance    target = SPIFFE ID (or `join:NAME`); unknown ones are marked and published
   *               anyway, with a warning (UNKNOWN_INSTANCE), for the same reason. Marked
   *               revoked until the longest certificate it could hold has expired, so it can
   *               neither renew, lease nor bootstrap again under that name; all its leases go.
   *   credential  target = a configured credential name (404); all its leases go. Sidecars
   *               lease it again from the current source.
   *   all         target = '*'; every lease goes.
   * The store is changed before publishing where a retry must still find the target
   * (instance: the mark), after publishing where it would not (lease: a retry after a failed
   * publish must not answer 404). A failed publish is a 503: the operator retries.
   */
  async revoke(actor: string, scope: unknown, target: unknown, reason: unknown = ''): Promise<RevokeResult> {
    if (typeof scope !== 'string' || !(REVOCATION_SCOPES as readonly string[]).includes(scope)) {
      throw badRequest(`scope must be one of ${REVOCATION_SCOPES.join(', ')}`);
    }
    if (reason === undefined || reason === null) reason = '';
    if (typeof reason !== 'string' || !REASON.test(reason)) throw badRequest('reason must be a string of at most 512 characters without control characters');
    if (typeof target !== 'string' || target.length === 0 || target.length > MAX_REVOCATION_TARGET) throw badRequest('target must be a non-empty string');
    const s = scope as RevocationScope;
    let result: RevokeResult;
    switch (s) {
      case 'lease':
        result = await this.revokeLease(actor, target, reason);
        break;
      case 'instance':
        result = await this.revokeInstance(actor, target, reason);
        break;
      case 'credential':
        if (!this.d.issuers.has(target)) throw notFound('no such credential');
        result = await this.revokeLeases(actor, s, target, reason, { credential: target });
        break;
      case 'all':
        if (target !== ALL_TARGET) throw badRequest(`scope all takes target "${ALL_TARGET}"`);
        result = await this.revokeLeases(actor, s, ALL_TARGET, reason, {});
        break;
    }
    // Redis replicates asynchronously: a failover before its replicas have the mark and the
    // stream entry loses them, and nothing notices (the epoch survives). Wait for them a
    // moment; if they do not confirm, say so rather than answer as if it were durable.
    const replication = await this.d.store.replicated?.(REPLICATION_WAIT_MS).catch(() => ({ acked: 0, replicas: NaN }));
    if (replication && !(replication.acked >= replication.replicas)) {
      const warning = NOT_REPLICATED(replication.acked, replication.replicas);
      this.d.logger.warn({ revocation: result.revocation.id, scope: s, acked: replication.acked, replicas: replication.replicas }, warning);
      result = { ...result, warning: result.warning ? `${result.warning}; ${warning}` : warning };
    }
    return result;
  }

  /** `join:NAME` → spiffe://<td>/join/NAME; a SPIFFE ID of our trust domain as is; anything else 400. */
  private instanceId(target: string): string {
    if (target.startsWith('join:')) {
      const name = target.slice('join:'.length);
      if (!isValidIdentityName(name)) throw badRequest(`instance: "join:${name.slice(0, 64)}" is not a valid identity name`);
      return `spiffe://${this.d.trustDomain}/join/${name}`;
    }
    let trustDomain: string;
    try {
      trustDomain = parseSpiffeId(target).trustDomain;
    } catch (err) {
      throw badRequest(`instance: ${(err as Error).message}`);
    }
    if (trustDomain !== this.d.trustDomain) throw badRequest(`instance: not an identity of trust domain ${this.d.trustDomain}`);
    return target;
  }

  private async revokeLease(actor: string, leaseId: string, reason: string): Promise<RevokeResult> {
    if (!LEASE_ID.test(leaseId)) throw badRequest('lease: not a lease id');
    // A read error (the record unreadable) must not stop the revocation going out either.
    const record = await unlessUnreadable(this.d.store.getLease(leaseId));
    if (record === UNREADABLE) {
      const revocation = await this.publish('lease', leaseId, reason, actor);
      const deleted = await this.d.store.deleteLease(leaseId).catch((err: unknown) => (this.d.logger.warn({ err, lease: leaseId, revocation: revocation.id }, LEASES_NOT_DELETED), false));
      this.d.audit.emit('lease.revoked', { lease: leaseId, reason, by: actor, error: 'lease record unreadable' });
      return { revocation, leases: deleted ? 1 : 0, warning: LEASES_NOT_DELETED };
    }
    if (!record) {
      const revocation = await this.publish('lease', leaseId, reason, actor);
      this.d.logger.warn({ lease: leaseId, revocation: revocation.id }, UNKNOWN_LEASE);
      this.d.audit.emit('lease.revoked', { lease: leaseId, reason, by: actor, error: 'unknown lease' });
      return { revocation, leases: 0, warning: UNKNOWN_LEASE };
    }
    const revocation = await this.publish('lease', leaseId, reason, actor);
    const deleted = await this.d.store.deleteLease(leaseId);
    this.d.audit.emit('lease.revoked', {
      identity: record.instance,
      instance: record.instance,
      credential: record.credential,
      lease: leaseId,
      fingerprint: record.fingerprint,
      reason,
      by: actor,
    });
    return { revocation, leases: deleted ? 1 : 0 };
  }

  private async revokeInstance(actor: string, target: string, reason: string): Promise<RevokeResult> {
    const identity = this.instanceId(target);
    // None of these reads may stop the mark: one that fails (an error from Redis) is
    // taken as "not known", and never makes the answer say the instance was unknown.
    const [certified, revoked, leases] = await Promise.all([
      unlessUnreadable(this.d.store.identityUntil(identity)),
      unlessUnreadable(this.d.store.isIdentityRevoked(identity)),
      unlessUnreadable(this.d.store.listLeases({ instance: identity })),
    ]);
    const certifiedUntil = certified === UNREADABLE ? undefined : certified;
    // Known: certified since the registry exists, already revoked (a retry), or holding
    // leases (an identity certified before the registry did, not yet renewed). Unknown:
    // never certified, or forgotten by a Redis that lost its data — revoked all the same.
    const unknown = certified === undefined && revoked === false && leases !== UNREADABLE && leases.length === 0;
    // Mark first: from here on no replica serves it, whatever happens next.
    // + MARK_MARGIN_MS: a renewal already past its revocation check signs its certificate a
    // little later than now (notAfter = its own now + ttl): the mark must outlast that too.
    // Replicas' clocks may disagree: the mark also outlasts the instance's recorded
    // certificate end (signed by whichever replica, by its clock), and lasts at least one
    // identity TTL + margin by the store's own clock (Redis expires it by that one).
    const spanMs = this.d.identityTtlMs + MARK_MARGIN_MS;
    const nowMs = this.d.clock.wallMs();
    // The recorded end counts up to a day of skew past our own reach: a corrupt entry (a
    // year 9999) must not make the mark unwritable (PXAT refused) nor eternal.
    const recorded = Math.min(certifiedUntil ?? 0, nowMs + this.d.identityTtlMs + 86_400_000);
    const untilMs = Math.max(nowMs + spanMs, recorded + MARK_MARGIN_MS);
    await this.d.store.revokeIdentity(identity, untilMs, spanMs);
    this.d.revocationMemory?.markInstance(identity, untilMs);
    const revocation = await this.publish('instance', identity, reason, actor);
    // Listed again: a lease stored between the first listing and the mark is included.
    const deleted = await this.deleteCovered(revocation, { instance: identity }, reason, actor);
    this.d.audit.emit('instance.revoked', { identity, instance: identity, reason, by: actor, ...(unknown ? { error: 'unknown instance' } : {}) });
    if (unknown) this.d.logger.warn({ instance: identity, revocation: revocation.id }, UNKNOWN_INSTANCE);
    const warning = [unknown ? UNKNOWN_INSTANCE : undefined, deleted.warning].filter(Boolean).join('; ');
    return { revocation, leases: deleted.n, ...(warning ? { warning } : {}) };
  }

  private async revokeLeases(actor: string, scope: 'credential' | 'all', target: string, reason: string, filter: LeaseFilter): Promise<RevokeResult> {
    const revocation = await this.publish(scope, target, reason, actor);
    // Sidecars lease again as soon as the revocation reaches them, which can be before the
    // listing below: those fresh leases are not revoked (their holders use them).
    const deleted = await this.deleteCovered(revocation, filter, reason, actor);
    this.d.audit.emit('credential.revoked', { credential: target, reason, by: actor });
    return { revocation, leases: deleted.n, ...(deleted.warning ? { warning: deleted.warning } : {}) };
  }

  /**
   * After a revocation is recorded and published: delete the lease records it covers. It is
   * in force by then (sidecars and verifiers act on the publication, the mark refuses the
   * instance), so a store error here is not a failed revocation — a 503 would have the
   * operator retry what is done, and once hid that it was. Said in the answer instead; the
   * records expire on their own.
   */
  private async deleteCovered(revocation: Revocation, filter: LeaseFilter, reason: string, actor: string): Promise<{ n: number; warning?: string }> {
    try {
      const listed = await this.d.store.listLeases(filter);
      const covered = revocation.scope === 'credential' || revocation.scope === 'all' ? revokedBy(listed, Date.parse(revocation.at)) : listed;
      return { n: await this.deleteAll(covered, reason, actor) };
    } catch (err) {
      this.d.logger.warn({ err, revocation: revocation.id, scope: revocation.scope, target: revocation.target }, LEASES_NOT_DELETED);
      return { n: 0, warning: LEASES_NOT_DELETED };
    }
  }

  private async deleteAll(records: LeaseRecord[], reason: string, actor: string): Promise<number> {
    let n = 0;
    for (let i = 0; i < records.length; i += DELETE_BATCH) {
      const batch = records.slice(i, i + DELETE_BATCH);
      const deleted = await Promise.all(batch.map((r) => this.d.store.deleteLease(r.id)));
      batch.forEach((r, j) => {
        if (!deleted[j]) return;
        n++;
        this.d.audit.emit('lease.revoked', { identity: r.instance, instance: r.instance, credential: r.credential, lease: r.id, fingerprint: r.fingerprint, reason, by: actor });
      });
    }
    return n;
  }

  private async publish(scope: RevocationScope, target: string, reason: string, by: string): Promise<Revocation> {
    let revocation: Revocation;
    try {
      revocation = await this.d.revocations.publish({ scope, target, reason, by });
    } catch (err) {
      this.d.logger.warn({ err, scope, target }, 'revocation could not be published');
      throw new AuthorityError('LEASH_ERR_STORE', 503, 'the revocation could not be published (revocation bus unavailable); retry', {}, { cause: err });
    }
    this.d.metrics.revoked(scope);
    this.d.revocationMemory?.published(revocation);
    return revocation;
  }
}
