import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { RedisTarget } from '../bus/connect.js';
import type { MemoryRevocationBus } from '../bus/memory.js';
import { holdsCertificate } from '../core/ca-bundle.js';
import { systemClock, type Clock } from '../core/clock.js';
import { leashTokenFacts } from '../core/protocol.js';
import { VerifyError } from './errors.js';
import { JwksCache } from './jwks.js';
import { DenySet } from './deny-set.js';
import { RevocationChannel } from './revocations.js';

/** What a service needs to accept leash JWTs (docs/verify.md). */
export interface VerifierOptions {
  /** https://<authority>/.well-known/jwks.json — HTTPS only, the certificate is always verified. */
  jwksUrl: string;
  /** PEM of the authority's CA (its private CA); absent: the system's trusted roots. */
  ca?: string;
  /** Required `iss`, when the authority is configured with one (signing.issuer). */
  issuer?: string;
  /** This service's name as the authority's credentials name it (`aud`). Required. */
  audience: string | string[];
  /** Scopes every token must carry; verify(token, { scopes }) adds per-call ones. */
  requiredScopes?: string[];
  /** Leeway for exp/nbf, seconds. Default 0. */
  clockToleranceSeconds?: number;
  /** Where revocations come from: the authority's Redis (same prefix), or `leash dev`'s in-process bus. */
  revocations?: { redis: RedisTarget; prefix?: string } | { bus: MemoryRevocationBus };
  /** Background refresh of a JWKS older than this, ms. Default 10 min. */
  jwksCacheMs?: number;
  /** At most one refetch for unknown key ids per this interval, ms. Default 30 s. */
  jwksMinRefetchMs?: number;
  /** JWKS request deadline, ms. Default 5 s. */
  jwksTimeoutMs?: number;
  /** The longest lease TTL the authority grants (its policies' maxTtl), ms: how long revocations are kept. Default 1 h. */
  maxTokenTtlMs?: number;
  /**
   * When revocations may have been lost (the stream was trimmed past our position while we
   * were disconnected): 'deny' (default) refuses every token issued up to that moment, as an
   * `all` revocation would; 'warn' only logs.
   */
  onGap?: 'deny' | 'warn';
  /** Refuse every token (LEASH_VERIFY_UNAVAILABLE) while the revocation channel is down. Default false: log and verify with the deny-set we have. */
  requireRevocationChannel?: boolean;
  clock?: Clock;
  logger?: { warn(obj: Record<string, unknown>, msg: string): void };
}

export interface VerifiedToken {
  /** The agent instance's SPIFFE ID. */
  sub: string;
  /** The lease id. */
  jti: string;
  scopes: string[];
  /** The credential name (`leash_cred`); undefined for tokens from an authority that does not set it (every `credential` revocation then covers the token). */
  credential: string | undefined;
  /** Seconds since the epoch. */
  exp: number;
  iat: number;
  /** The whole verified payload. */
  claims: JWTPayload;
}

export interface Verifier {
  verify(token: string, opts?: { scopes?: string[] }): Promise<VerifiedToken>;
  /** Resolves when the JWKS is loaded and (when configured) the revocation channel is up. Retries until then; never rejects. */
  ready(): Promise<void>;
  /** True while revocations arrive (subscribed and caught up); true when none are configured. */
  readonly channelUp: boolean;
  close(): Promise<void>;
}

const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

export function createVerifier(options: VerifierOptions): Verifier {
  const url = new URL(options.jwksUrl);
  if (url.protocol !== 'https:') throw new TypeError(`leash/verify: jwksUrl must be https (got ${url.protocol})`);
  // `ca: ''` (an empty file read in) would otherwise mean every public root: a JWKS from anyone with a certificate for the host.
  if (options.ca !== undefined && !holdsCertificate(options.ca)) throw new TypeError('leash/verify: ca holds no PEM certificate (omit it to use the system roots)');
  const audience = options.audience;
  if (!audience || (Array.isArray(audience) && audience.length === 0)) throw new TypeError('leash/verify: audience is required');
  for (const s of options.requiredScopes ?? []) if (!SCOPE_TOKEN.test(s)) throw new TypeError(`leash/verify: invalid scope ${JSON.stringify(s)}`);
  const clock = options.clock ?? systemClock;
  const warn = (obj: Record<string, unknown>, msg: string) => options.logger?.warn(obj, msg);
  const tolerance = options.clockToleranceSeconds ?? 0;
  const jwks = new JwksCache({
    url,
    ca: options.ca,
    cacheMs: options.jwksCacheMs ?? 600_000,
    minRefetchMs: options.jwksMinRefetchMs ?? 30_000,
    timeoutMs: options.jwksTimeoutMs,
    clock,
    warn,
  });
  const deny = new DenySet((options.maxTokenTtlMs ?? 3_600_000) + tolerance * 1000, () => clock.wallMs());
  let closed = false;
  let channel: RevocationChannel | undefined;
  if (options.revocations) {
    channel = new RevocationChannel(options.revocations, {
      revocation: (r) => {
        if (r.notUnderstood) {
          warn(
            { revocation: r.id, scope: r.notUnderstood.scope, target: r.notUnderstood.target, at: r.at },
            'leash/verify: revocation not understood (written by a newer leash): refusing every token issued before it (docs/revocation.md, "Across versions"); upgrade this verifier',
          );
        }
        deny.apply(r);
      },
      channel: (up) => {
        if (!up && !closed) warn({}, 'leash/verify: revocation channel down; revocations published meanwhile apply once it is back');
      },
      gap: (why) => {
        const at = clock.wallMs();
        // A reset (Redis came back without the stream) is a gap of unknown extent: we cannot
        // know what was revoked while we were away, so nothing issued until now is trusted.
        const what = why === 'reset' ? 'the revocation stream was reset: Redis lost its data' : 'stream trimmed past our position';
        if (options.onGap === 'warn') return warn({ why }, `leash/verify: revocations may have been lost (${what}); onGap=warn: accepting tokens`);
        deny.failClosed(at);
        warn({ why, at: new Date(at).toISOString() }, `leash/verify: revocations may have been lost (${what}): refusing every token issued until now`);
      },
      malformed: (reason) => warn({ reason }, 'leash/verify: malformed revocation skipped'),
      exposed: () =>
        warn({}, "leash/verify: this verifier's Redis user can read the authority's own records (leases, join tokens, revocation marks): give verifiers a user of their own (docs/revocation.md, \"A Redis user for sidecars\")"),
    });
  } else {
    warn({}, 'leash/verify: no revocation source configured: revoked tokens are accepted until they expire');
  }

  const readyPromise = (async () => {
    const starting = channel?.start();
    for (let attempt = 0; !closed && !jwks.loaded; attempt++) {
      if ((await jwks.refresh('load')) === 'fetched') break;
      await sleep(Math.min(200 * 2 ** attempt, 5_000));
    }
    await starting;
  })();

  const verify = async (token: string, opts: { scopes?: string[] } = {}): Promise<VerifiedToken> => {
    if (closed) throw new VerifyError('LEASH_VERIFY_UNAVAILABLE', 'verifier is closed');
    if (typeof token !== 'string' || token.length === 0 || token.length > 16_384) throw new VerifyError('LEASH_VERIFY_INVALID', 'no token, or not a JWT');
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new VerifyError('LEASH_VERIFY_INVALID', 'not a JWT (malformed header)');
    }
    if (token.split('.').length !== 3) throw new VerifyError('LEASH_VERIFY_INVALID', 'not a signed compact JWT');
    if (header.alg !== 'ES256') throw new VerifyError('LEASH_VERIFY_INVALID', `algorithm ${String(header.alg).slice(0, 16)} refused: only ES256`);
    if (typeof header.kid !== 'string' || !header.kid) throw new VerifyError('LEASH_VERIFY_INVALID', 'token has no kid');
    if (header.crit !== undefined) throw new VerifyError('LEASH_VERIFY_INVALID', 'crit header refused');
    const keys = await jwks.keysFor(header.kid);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        algorithms: ['ES256'],
        audience,
        issuer: options.issuer,
        clockTolerance: tolerance,
        currentDate: new Date(clock.wallMs()),
        requiredClaims: ['sub', 'jti', 'iat', 'exp'],
      }));
    } catch (err) {
      throw mapJoseError(err);
    }
    // sub, jti, iat, exp and leash_cred, and the issue time in ms (core/protocol.ts).
    const facts = leashTokenFacts(payload);
    if (!facts) throw new VerifyError('LEASH_VERIFY_INVALID', 'token claims of the wrong type');
    const { sub, jti, iat, exp, credential: cred, issuedMs } = facts;
    if (options.requireRevocationChannel && channel && !channel.up) {
      throw new VerifyError('LEASH_VERIFY_UNAVAILABLE', 'revocation channel down (requireRevocationChannel)');
    }
    // `iat` has one-second precision; an authority that also signs `leash_iat_ms` (issue
    // time in ms, consistent with iat) lets a lease issued just after a revocation, in the
    // same second, pass. Without it the verifier assumes the earliest instant of that second.
    const denied = deny.check({ jti, sub, credential: cred, issuedMs });
    if (denied) {
      throw new VerifyError('LEASH_VERIFY_REVOKED', denied.scope === 'gap' ? 'token issued before a revocation gap (fail closed)' : denied.scope === 'unknown' ? 'token issued before a revocation this version does not understand (fail closed)' : `token revoked (${denied.scope})`, {
        scope: denied.scope,
        revocation: denied.id,
      });
    }
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [];
    const have = new Set(scopes);
    const missing = [...(options.requiredScopes ?? []), ...(opts.scopes ?? [])].filter((s) => !have.has(s));
    if (missing.length) throw new VerifyError('LEASH_VERIFY_SCOPE', `missing scope ${missing.map((s) => JSON.stringify(s.slice(0, 64))).join(', ')}`);
    return { sub, jti, scopes, credential: cred, exp, iat, claims: payload };
  };

  return {
    verify,
    ready: () => readyPromise,
    get channelUp() {
      return channel ? channel.up : true;
    },
    async close() {
      if (closed) return;
      closed = true;
      await channel?.close();
    },
  };
}

function mapJoseError(err: unknown): VerifyError {
  if (err instanceof VerifyError) return err;
  if (err instanceof joseErrors.JWTExpired) return new VerifyError('LEASH_VERIFY_EXPIRED', 'token expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return new VerifyError('LEASH_VERIFY_AUDIENCE', 'token is not for this audience');
    return new VerifyError('LEASH_VERIFY_INVALID', `claim ${err.claim}: ${err.reason}`);
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new VerifyError('LEASH_VERIFY_INVALID', 'signature does not verify');
  if (err instanceof joseErrors.JOSEError) return new VerifyError('LEASH_VERIFY_INVALID', `invalid token (${err.code})`);
  return new VerifyError('LEASH_VERIFY_INVALID', 'invalid token', {}, { cause: err });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
