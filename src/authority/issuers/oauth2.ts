import { setMaxListeners } from 'node:events';
import type { Agent } from 'node:http';
import { HttpJsonError, httpJson, httpJsonAgent } from '../../core/http-json.js';
import { fingerprint } from '../../core/fingerprint.js';
import { isUsableLeaseValue, MAX_LEASE_VALUE } from '../../core/protocol.js';
import { looksLikeSecret } from '../../config/secret-shape.js';
import { IssuerError, issuerLabel } from './errors.js';
import type { IssueRequest, Issued, Issuer } from './types.js';

/** The client secret, or a function that reads its current value (a rotating file). */
export type SecretValue = string | (() => string | Promise<string>);

export interface OAuth2IssuerOptions {
  /** The token endpoint. https, or http only to a loopback host (tests, a local IdP proxy). */
  tokenUrl: string;
  clientId: string;
  clientSecret: SecretValue;
  /** `scope` form parameter (space-separated), optional. */
  scope?: string;
  /** `audience` form parameter (Auth0, Okta and others), optional. */
  audience?: string;
  /** RFC 6749 §2.3.1: HTTP Basic (default) or the client_id/client_secret form parameters. */
  authMethod?: 'client_secret_basic' | 'client_secret_post';
  /** Whole-exchange timeout, ms. Default 10 s. */
  timeoutMs?: number;
  /** PEM CA bundle for a private CA; replaces the default roots. Verification is always on. */
  caPem?: string;
  /** Cap on the lease lifetime, and the lifetime when the endpoint sends no expires_in. */
  ttlMs?: number;
  /** Credential name, for error messages. */
  credential?: string;
}

const MAX_BODY_BYTES = 1024 * 1024;
/**
 * The `error` repeated in messages: a code-shaped token only. RFC 6749 §5.2 allows any
 * printable text there, but every registered code (invalid_client, invalid_grant,
 * unauthorized_client, temporarily_unavailable…) is lower-case words joined by `_`; free
 * text (spaces, mixed case, a reflected `Basic …` header or client secret) is not repeated.
 */
const ERROR_CODE = /^[a-z][a-z0-9_]{2,63}$/;

/** RFC 6749 Appendix B: form-urlencode, as required for the Basic credentials too (§2.3.1). */
const formEncode = (s: string): string => new URLSearchParams({ v: s }).toString().slice(2);

/**
 * OAuth 2.0 client-credentials grant (RFC 6749 §4.4): one token endpoint call per lease,
 * nothing cached across leases, so every instance holds its own token and revoking one
 * lease never touches another's. Lease lifetime = min(expires_in, ttl, maxTtl).
 * Errors carry the endpoint, the HTTP status and the RFC 6749 `error` code — never the
 * client secret, a token or the response body.
 */
export class OAuth2Issuer implements Issuer {
  readonly kind = 'oauth2' as const;
  private readonly url: URL;
  private readonly agent: Agent;
  /** Aborted by close(): every call in flight ends with LEASH_ERR_ISSUER_CLOSED. */
  private readonly closing = new AbortController();
  private closed = false;

  constructor(private readonly options: OAuth2IssuerOptions) {
    let url: URL;
    try {
      url = new URL(options.tokenUrl);
    } catch {
      throw this.configError(`tokenUrl is not a URL`);
    }
    const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
    if (!(url.protocol === 'https:' || (url.protocol === 'http:' && loopback))) {
      throw this.configError(`tokenUrl must be https (http only to a loopback host), got ${url.protocol}//${url.host}`);
    }
    if (url.username || url.password) throw this.configError('tokenUrl must not carry credentials');
    if (!options.clientId) throw this.configError('clientId is empty');
    // An empty CA bundle would silently mean "the default roots": the pin the operator asked for, gone.
    if (options.caPem !== undefined && !options.caPem.includes('-----BEGIN CERTIFICATE-----')) {
      throw this.configError('caFile holds no PEM certificate');
    }
    this.url = url;
    // TLS is always verified (httpJsonAgent), against caPem when given.
    this.agent = url.protocol === 'https:' ? httpJsonAgent('https:', { ca: options.caPem }) : httpJsonAgent('http:');
    // One abort listener per call in flight: many at once is normal, not a leak.
    setMaxListeners(0, this.closing.signal);
  }

  async issue(req: IssueRequest): Promise<Issued> {
    if (this.closed) throw new IssuerError('LEASH_ERR_ISSUER_CLOSED', `${this.label(req)} is closed`, this.ctx(req));
    const secret = typeof this.options.clientSecret === 'function' ? await this.options.clientSecret() : this.options.clientSecret;
    if (!secret) throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `${this.label(req)}: the client secret is empty`, this.ctx(req));

    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (this.options.scope) form.set('scope', this.options.scope);
    if (this.options.audience) form.set('audience', this.options.audience);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if ((this.options.authMethod ?? 'client_secret_basic') === 'client_secret_basic') {
      const pair = `${formEncode(this.options.clientId)}:${formEncode(secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
    } else {
      form.set('client_id', this.options.clientId);
      form.set('client_secret', secret);
    }
    const body = Buffer.from(form.toString(), 'utf8');
    headers['content-length'] = String(body.length);

    const { status, text } = await this.post(body, headers, req);
    return this.parse(status, text, req, secret);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    this.agent.destroy();
  }

  private async post(body: Buffer, headers: Record<string, string>, req: IssueRequest): Promise<{ status: number; text: string }> {
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    const where = `${this.url.origin}${this.url.pathname}`;
    try {
      const res = await httpJson({ method: 'POST', url: this.url, headers, body, agent: this.agent, timeoutMs, maxBodyBytes: MAX_BODY_BYTES, signal: this.closing.signal });
      return { status: res.status, text: res.text };
    } catch (err) {
      const failure = err instanceof HttpJsonError ? err.failure : undefined;
      if (failure === 'aborted' || this.closed) throw new IssuerError('LEASH_ERR_ISSUER_CLOSED', `${this.label(req)} is closed`, this.ctx(req));
      if (failure === 'timeout') throw new IssuerError('LEASH_ERR_ISSUER_TIMEOUT', `${this.label(req)}: token endpoint ${where} did not answer within ${timeoutMs}ms`, this.ctx(req));
      if (failure === 'too_large') throw new IssuerError('LEASH_ERR_ISSUER_RESPONSE', `${this.label(req)}: token endpoint ${where} answered more than ${MAX_BODY_BYTES} bytes`, this.ctx(req));
      throw this.unreachable(where, err as Error, req);
    }
  }

  private parse(status: number, text: string, req: IssueRequest, secret: string): Issued {
    const where = `${this.url.origin}${this.url.pathname}`;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const obj = json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
    if (status < 200 || status > 299) {
      // Only the RFC 6749 §5.2 error code is repeated: error_description and the rest of
      // the body are the endpoint's free text and could echo anything.
      // Nor a code-shaped `error` that is, or holds, the client secret or a key-like value.
      const e = obj?.error;
      const echoes = (t: string): boolean => t.includes(secret) || t.includes(formEncode(secret));
      const code = typeof e === 'string' && ERROR_CODE.test(e) && !looksLikeSecret(e) && !echoes(e) ? e : undefined;
      const ctx = { ...this.ctx(req), status, ...(code ? { oauthError: code } : {}) };
      throw new IssuerError('LEASH_ERR_ISSUER_UPSTREAM', `${this.label(req)}: token endpoint ${where} answered ${status}${code ? ` ${code}` : ''}`, ctx);
    }
    const bad = (why: string): IssuerError =>
      new IssuerError('LEASH_ERR_ISSUER_RESPONSE', `${this.label(req)}: token endpoint ${where} answered ${status} but ${why}`, { ...this.ctx(req), status });
    if (!obj) throw bad('the body is not a JSON object');
    const token = obj.access_token;
    if (typeof token !== 'string' || token.length === 0) throw bad('without an access_token');
    // A token no sidecar can inject (CR/LF, other controls, non-ASCII, > 16 KiB) is refused here,
    // before a lease is stored for it.
    if (!isUsableLeaseValue(token)) throw bad(`with an access_token that is not printable ASCII of at most ${MAX_LEASE_VALUE} characters`);
    // expires_in is RECOMMENDED (§5.1) and some servers send it as a string.
    const raw = obj.expires_in;
    const expiresIn = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : undefined;
    if (raw !== undefined && (expiresIn === undefined || !Number.isFinite(expiresIn))) throw bad('with an unreadable expires_in');
    if (expiresIn !== undefined && expiresIn <= 0) throw bad(`with expires_in ${expiresIn}`);
    if (expiresIn === undefined && this.options.ttlMs === undefined) throw bad('without expires_in and no ttl is configured');
    const ttlMs = Math.min(expiresIn === undefined ? Infinity : expiresIn * 1000, this.options.ttlMs ?? Infinity, req.maxTtlMs);
    if (!(ttlMs >= 1000)) throw bad(`with a lifetime under one second`);
    return { value: token, version: fingerprint(token), issuedAtMs: req.nowMs, expiresAtMs: req.nowMs + ttlMs };
  }

  private unreachable(where: string, err: Error, req: IssueRequest): IssuerError {
    const code = (err instanceof HttpJsonError ? err.errno : undefined) ?? err.name;
    return new IssuerError('LEASH_ERR_ISSUER_UPSTREAM', `${this.label(req)}: token endpoint ${where} unreachable: ${code}`, this.ctx(req), { cause: err });
  }

  private configError(message: string): IssuerError {
    return new IssuerError('LEASH_ERR_ISSUER_CONFIG', `${this.label()}: ${message}`, this.ctx());
  }

  private ctx(req?: IssueRequest): { issuer: string; credential: string | undefined } {
    return { issuer: 'oauth2', credential: req?.credential ?? this.options.credential };
  }

  private label(req?: IssueRequest): string {
    return issuerLabel('oauth2', req?.credential ?? this.options.credential);
  }
}
