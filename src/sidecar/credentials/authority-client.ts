import type { Agent } from 'node:https';
import { AuthorityCallError } from '../../core/errors.js';
import { holdsCertificate } from '../../core/ca-bundle.js';
import { HttpJsonError, httpJson, httpJsonAgent, type HttpJsonResponse } from '../../core/http-json.js';
import { API, type IdentityResponse, type LeaseResponse } from '../../core/protocol.js';
import type { Attestation } from '../../core/attestation.js';
import { authorityReason } from './authority-reason.js';
import { checkLeaseResponse, criticalNotUnderstood, MAX_LEASE_BODY } from './lease-response.js';

/**
 * The sidecar's HTTPS client for the authority. TLS to the authority is verified
 * against the configured CA; once the sidecar has an identity every call is mTLS with
 * it. Answers are sorted into retryable / refused / malformed (AuthorityCallError).
 */
export interface Identity {
  certificate: string;
  privateKey: string;
}

export interface AuthorityCaReload {
  /** Reads the CA bundle again (config `authority.caFile`); throws when it cannot be read. */
  read: () => string;
  /** The bundle changed and is now trusted (`reloaded`), or changed but holds no certificate and was not (`refused`). */
  onChange?: (outcome: 'reloaded' | 'refused') => void;
}

export class AuthorityClient {
  private agent: Agent;
  private identity: Identity | undefined;
  /** The last bundle read that was refused, so a broken file is reported once. */
  private refusedCa: string | undefined;

  constructor(
    private readonly baseUrl: URL,
    private caPem: string,
    private readonly timeoutMs = 5_000,
    private readonly caReload?: AuthorityCaReload,
  ) {
    this.agent = this.makeAgent(undefined);
  }

  /** Use this identity for every later call (called on bootstrap and on each renewal). */
  setIdentity(identity: Identity | undefined): void {
    this.identity = identity;
    this.replaceAgent();
  }

  private replaceAgent(): void {
    const old = this.agent;
    this.agent = this.makeAgent(this.identity);
    // Let calls already in flight finish on the old pool; close it once idle.
    setTimeout(() => old.destroy(), this.timeoutMs * 2).unref();
  }

  private makeAgent(identity: Identity | undefined): Agent {
    return httpJsonAgent('https:', { maxSockets: 8, ca: this.caPem, cert: identity?.certificate, key: identity?.privateKey });
  }

  /**
   * `authority.caFile` is read again before every call (a few calls per TTL; never on the
   * proxy's path): a ConfigMap updated to a bundle of the old and new CA is trusted without a
   * restart, so the authority can move to the new CA while every sidecar runs. A bundle that
   * cannot be read now (mid-swap) or holds no certificate leaves the one in use.
   */
  private refreshCa(): void {
    if (!this.caReload) return;
    let pem: string;
    try {
      pem = this.caReload.read();
    } catch {
      return;
    }
    if (pem === this.caPem || pem === this.refusedCa) return;
    if (!holdsCertificate(pem)) {
      this.refusedCa = pem;
      this.caReload.onChange?.('refused');
      return;
    }
    this.caPem = pem;
    this.refusedCa = undefined;
    this.replaceAgent();
    this.caReload.onChange?.('reloaded');
  }

  async lease(credential: string, ttlSeconds?: number): Promise<LeaseResponse> {
    const body = await this.call('POST', API.leases, { credential, ...(ttlSeconds ? { ttlSeconds } : {}) });
    const checked = checkLeaseResponse(body, credential);
    if (!checked.ok) throw new AuthorityCallError('malformed', `lease answer rejected: ${checked.reason}`, { credential });
    return checked.lease;
  }

  async release(leaseId: string): Promise<void> {
    await this.call('DELETE', API.lease(leaseId));
  }

  bootstrap(attestation: Attestation, csr: string): Promise<IdentityResponse> {
    // A join token is also sent in the older shape, which authorities before node
    // attestors read (a rolling upgrade may meet one); newer ones read `attestation`.
    const legacy = attestation.kind === 'join_token' ? { joinToken: attestation.token } : {};
    return this.identityCall(API.bootstrap, { attestation, ...legacy, csr });
  }

  renewIdentity(csr: string): Promise<IdentityResponse> {
    return this.identityCall(API.renewIdentity, { csr });
  }

  private async identityCall(path: string, payload: unknown): Promise<IdentityResponse> {
    const body = (await this.call('POST', path, payload)) as Partial<IdentityResponse> | null;
    const crit = body && typeof body === 'object' ? criticalNotUnderstood(body as Record<string, unknown>) : undefined;
    if (crit) throw new AuthorityCallError('malformed', `identity answer rejected: ${crit}`);
    if (
      !body ||
      typeof body.identity !== 'string' ||
      !body.identity.startsWith('spiffe://') ||
      typeof body.certificate !== 'string' ||
      !body.certificate.includes('BEGIN CERTIFICATE') ||
      typeof body.ttlSeconds !== 'number' ||
      !(body.ttlSeconds > 0)
    ) {
      throw new AuthorityCallError('malformed', 'identity answer rejected: missing or bad fields');
    }
    return body as IdentityResponse;
  }

  close(): void {
    this.agent.destroy();
  }

  /** One JSON call. Resolves with the parsed 2xx body; throws AuthorityCallError otherwise. */
  private async call(method: string, path: string, payload?: unknown): Promise<unknown> {
    this.refreshCa();
    const url = new URL(path, this.baseUrl);
    let res: HttpJsonResponse;
    try {
      res = await httpJson({ method, url, agent: this.agent, json: payload, timeoutMs: this.timeoutMs, maxBodyBytes: MAX_LEASE_BODY });
    } catch (err) {
      throw this.failed(err);
    }
    const status = res.status;
    let body: unknown;
    try {
      body = res.text ? res.json() : null;
    } catch {
      body = undefined;
    }
    if (status >= 200 && status < 300) {
      if (body === undefined) throw new AuthorityCallError('malformed', 'authority answer is not JSON', { status });
      return body;
    }
    const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
    // Only a code-shaped code is shown: anything else is body text, which never goes into an error.
    const detail = typeof code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? ` (${code})` : '';
    const kind = status >= 500 || status === 429 || status === 408 ? 'retryable' : 'refused';
    // A refusal is the operator's to fix ("join token is invalid, expired or already
    // used"): its message is carried, made safe (authority-reason.ts). A 5xx's is not:
    // it may describe an issuer's upstream, and the status says enough to retry.
    const reason = kind === 'refused' ? authorityReason(body) : undefined;
    const where = `${method} ${path.split('/').slice(0, 3).join('/')}`;
    const retryAfterMs = kind === 'retryable' ? retryAfterHeaderMs(res.headers['retry-after']) : undefined;
    throw new AuthorityCallError(kind, `authority answered ${status}${detail} to ${where}${reason ? `: ${reason}` : ''}`, { status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
  }

  /** A transport failure, sorted: too large a 2xx is malformed, everything else retryable. */
  private failed(err: unknown): AuthorityCallError {
    if (!(err instanceof HttpJsonError)) return new AuthorityCallError('retryable', 'authority unreachable (error)', {}, { cause: err });
    const status = err.status;
    if (err.failure === 'too_large') {
      return new AuthorityCallError(status !== undefined && status >= 200 && status < 300 ? 'malformed' : 'retryable', `authority answer larger than ${MAX_LEASE_BODY} bytes`, { status });
    }
    if (err.failure === 'cut_off') return new AuthorityCallError('retryable', `authority answer cut off (${err.errno ?? 'error'})`, { status }, { cause: err });
    return new AuthorityCallError('retryable', `authority unreachable (${err.errno ?? 'error'})`, {}, { cause: err });
  }
}

/**
 * Pure: a `Retry-After` header as ms, when it is delta-seconds (what the authority sends:
 * `429 LEASH_ERR_RATE_LIMITED`); an HTTP-date, a list or anything else counts as absent.
 */
export function retryAfterHeaderMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,9}$/.test(value.trim())) return undefined;
  return Number(value.trim()) * 1000;
}
