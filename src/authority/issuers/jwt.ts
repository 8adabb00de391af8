import { createPrivateKey, createPublicKey, KeyObject, randomUUID, sign as nodeSign, type JsonWebKey } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importPKCS8, type CryptoKey, type JWK } from 'jose';

const b64 = (obj: unknown) => Buffer.from(JSON.stringify(obj)).toString('base64url');
const keyObjects = new WeakMap<CryptoKey, KeyObject>();
/** The node:crypto view of a signing key, made once per key. */
function keyObject(key: CryptoKey): KeyObject {
  let ko = keyObjects.get(key);
  if (!ko) keyObjects.set(key, (ko = KeyObject.from(key as unknown as Parameters<typeof KeyObject.from>[0])));
  return ko;
}
import { systemClock, type Clock } from '../../core/clock.js';
import { CLAIMS, type LeashTokenClaims } from '../../core/protocol.js';
import { IssuerError, issuerLabel } from './errors.js';
import type { IssueRequest, Issued, Issuer } from './types.js';

const ALG = 'ES256';

/** A public key as published in the JWKS (RFC 7517), kid = RFC 7638 thumbprint. */
export interface PublicJwk extends JWK {
  kid: string;
  alg: 'ES256';
  use: 'sig';
}

interface RingKey {
  kid: string;
  /** File name, or `generated`; the ring's order (see fromDir). */
  name: string;
  /** Imported once, non-extractable unless generated for dev: signing reuses it (no per-token import). */
  signKey: CryptoKey;
  publicJwk: PublicJwk;
  /** Latest `exp` (ms) of any token this process signed with it. */
  lastExpiryMs: number;
  /** Set when retired: no longer signs; published until max(this, lastExpiryMs). */
  retiredUntilMs: number | undefined;
  /** A staged key (file `*.next.pem` / `*.next.jwk`): published, never signs. */
  staged: boolean;
}

/** `2027-01-01.next.pem`: the next key, published by every replica before any signs with it. */
const STAGED = /\.next\.(pem|jwk)$/;

export interface JwtKeyRingOptions {
  clock?: Clock;
  /**
   * When reload() finds a key file gone, the key stays in the JWKS this long (or until the
   * last token this process signed with it expires, whichever is later), because other
   * replicas may have signed tokens with it that this one never saw. Default 1 h; set it
   * to at least the longest lease TTL policy allows.
   */
  retireGraceMs?: number;
}

/**
 * The authority's ES256 signing keys. One key signs; every key that may still have live
 * tokens is published in the JWKS, so verifiers accept tokens across a key rotation.
 *
 * Order: keys are ordered by FILE NAME (byte order), and the last one signs. Name the
 * files with a sortable prefix (`2025-06-01.pem`, `0002.jwk`). File mtime is not used:
 * copies, restores and Kubernetes' atomic volume swap rewrite it, and replicas with
 * different mtimes would sign with different keys.
 *
 * Staging: a key whose file is named `*.next.pem` (or `*.next.jwk`) is published and never
 * signs. Replicas see a new Secret at different times; a key that signed as soon as one
 * replica saw it was missing from the JWKS the others served, and a verifier whose refetch
 * reached one of those refused its tokens. Renamed to `*.pem` once every replica publishes
 * it (same kid), it signs.
 *
 * Lifetime: every loaded key stays published for the life of the ring. To retire one,
 * either call retire(kid, untilMs), or delete its file and call reload(): it stops
 * signing at once and leaves the JWKS only after its last token (plus retireGraceMs).
 */
export class JwtKeyRing {
  private keys: RingKey[] = [];
  private readonly clock: Clock;
  private readonly retireGraceMs: number;

  private constructor(
    private readonly dir: string | undefined,
    options: JwtKeyRingOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.retireGraceMs = options.retireGraceMs ?? 3_600_000;
  }

  /**
   * Load every `*.pem` (PKCS#8 EC P-256 private key) and `*.jwk` (private EC P-256 JWK)
   * in `dir`. Other files and dot-files (Kubernetes `..data`) are ignored; a file with
   * one of those suffixes that is not a P-256 private key fails the load, naming the file.
   */
  static async fromDir(dir: string, options: JwtKeyRingOptions = {}): Promise<JwtKeyRing> {
    const ring = new JwtKeyRing(dir, options);
    const loaded = await loadDir(dir);
    if (loaded.length === 0) {
      throw new IssuerError('LEASH_ERR_ISSUER_KEYS', `JWT keys directory ${dir} holds no *.pem or *.jwk private key`, { dir });
    }
    noSigningKey(loaded, dir);
    ring.keys = loaded;
    return ring;
  }

  /** One fresh P-256 key, for dev mode and tests. Extractable, so dev tooling may export it. */
  static async generate(options: JwtKeyRingOptions = {}): Promise<JwtKeyRing> {
    const ring = new JwtKeyRing(undefined, options);
    const { privateKey } = await generateKeyPair(ALG, { extractable: true });
    const jwk = await exportJWK(privateKey);
    ring.keys = [{ ...(await publicEntry(jwk, 'generated')), signKey: privateKey }];
    return ring;
  }

  /** The key that signs now: the last by name that is neither retired nor staged. */
  signer(): { kid: string; key: CryptoKey } {
    for (let i = this.keys.length - 1; i >= 0; i--) {
      const k = this.keys[i]!;
      if (k.retiredUntilMs === undefined && !k.staged) return { kid: k.kid, key: k.signKey };
    }
    throw new IssuerError('LEASH_ERR_ISSUER_KEYS', 'every JWT signing key is retired; add a new key', { dir: this.dir });
  }

  /** Called after signing: keeps the key published until this token has expired. */
  noteSigned(kid: string, expMs: number): void {
    const k = this.keys.find((x) => x.kid === kid);
    if (k && expMs > k.lastExpiryMs) k.lastExpiryMs = expMs;
  }

  /**
   * Stop signing with `kid` now; keep publishing it until `untilMs` or until the last token
   * this process signed with it expires, whichever is later. False when the kid is unknown.
   */
  retire(kid: string, untilMs: number): boolean {
    const k = this.keys.find((x) => x.kid === kid);
    if (!k) return false;
    k.retiredUntilMs = Math.max(untilMs, k.retiredUntilMs ?? 0);
    return true;
  }

  /**
   * Re-read the directory (e.g. on SIGHUP or a watch event): new keys are added (the last
   * by name signs), keys whose file is gone are retired (see JwtKeyRingOptions.retireGraceMs),
   * a retired key whose file is back is active again. A load error leaves the ring unchanged.
   */
  async reload(): Promise<void> {
    if (!this.dir) return;
    const loaded = await loadDir(this.dir);
    noSigningKey(loaded, this.dir); // a directory of staged keys only: keep signing as before
    const now = this.clock.wallMs();
    const present = new Map(loaded.map((k) => [k.kid, k]));
    for (const k of this.keys) {
      const again = present.get(k.kid);
      if (again) {
        k.retiredUntilMs = undefined;
        k.name = again.name;
        k.staged = again.staged;
      } else if (k.retiredUntilMs === undefined) {
        k.retiredUntilMs = now + this.retireGraceMs;
      }
    }
    const known = new Set(this.keys.map((k) => k.kid));
    this.keys.push(...loaded.filter((k) => !known.has(k.kid)));
    this.keys.sort(byName);
    this.prune(now);
  }

  /** The JWKS document (RFC 7517 §5): every key that signs or may still have live tokens. */
  jwks(): { keys: PublicJwk[] } {
    this.prune(this.clock.wallMs());
    return { keys: this.keys.map((k) => ({ ...k.publicJwk })) };
  }

  /** kids in ring order (oldest first), retired ones included while still published. */
  kids(): string[] {
    return this.keys.map((k) => k.kid);
  }

  private prune(now: number): void {
    this.keys = this.keys.filter((k) => k.retiredUntilMs === undefined || Math.max(k.retiredUntilMs, k.lastExpiryMs) > now);
  }
}

const byName = (a: RingKey, b: RingKey): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function noSigningKey(keys: readonly RingKey[], dir: string): void {
  if (keys.length > 0 && keys.every((k) => k.staged)) {
    throw new IssuerError('LEASH_ERR_ISSUER_KEYS', `JWT keys directory ${dir} holds only staged keys (*.next.pem, *.next.jwk), none to sign with`, { dir });
  }
}

async function loadDir(dir: string): Promise<RingKey[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new IssuerError('LEASH_ERR_ISSUER_KEYS', `cannot read JWT keys directory ${dir}: ${code}`, { dir }, { cause: err });
  }
  const byKid = new Map<string, RingKey>();
  for (const name of names.filter((n) => !n.startsWith('.') && /\.(pem|jwk)$/.test(n)).sort()) {
    const path = join(dir, name);
    // Kubernetes mounts keys as symlinks: stat follows them, a dirent would not.
    const s = await stat(path).catch(() => undefined);
    if (!s?.isFile()) continue;
    const key = await loadKeyFile(path, name);
    byKid.set(key.kid, key); // the same key under two names: the later name places it
  }
  return [...byKid.values()].sort(byName);
}

async function loadKeyFile(path: string, name: string): Promise<RingKey> {
  const bad = (why: string): IssuerError => new IssuerError('LEASH_ERR_ISSUER_KEYS', `JWT key file ${path}: ${why}`, { file: path });
  let keyObject: KeyObject;
  try {
    const text = await readFile(path, 'utf8');
    keyObject = name.endsWith('.jwk')
      ? createPrivateKey({ key: JSON.parse(text) as JsonWebKey, format: 'jwk' })
      : createPrivateKey({ key: text, format: 'pem' });
  } catch (err) {
    // Not the error itself as the cause: JSON.parse's message quotes the text near the
    // fault, i.e. key material (logged by 'signing keys reload failed'). Its code is enough.
    const code = (err as NodeJS.ErrnoException).code;
    throw bad(`not a private key (expected PKCS#8 PEM or a private JWK)${code ? ` (${code})` : err instanceof SyntaxError ? ' (not JSON)' : ''}`);
  }
  if (keyObject.asymmetricKeyType !== 'ec' || keyObject.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const got = [keyObject.asymmetricKeyType ?? 'unknown', keyObject.asymmetricKeyDetails?.namedCurve].filter(Boolean).join(' ');
    throw bad(`not an EC P-256 key (got ${got})`);
  }
  // Import once into a (non-extractable) CryptoKey; signing reuses it for every token.
  const pkcs8 = keyObject.export({ format: 'pem', type: 'pkcs8' }).toString();
  const signKey = await importPKCS8(pkcs8, ALG);
  const publicJwk = createPublicKey(keyObject).export({ format: 'jwk' }) as JWK;
  return { ...(await publicEntry(publicJwk, name)), signKey };
}

async function publicEntry(jwk: JWK, name: string): Promise<Omit<RingKey, 'signKey'>> {
  const pub = { kty: jwk.kty!, crv: jwk.crv!, x: jwk.x!, y: jwk.y! };
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  return { kid, name, publicJwk: { ...pub, kid, alg: ALG, use: 'sig' }, lastExpiryMs: 0, retiredUntilMs: undefined, staged: STAGED.test(name) };
}

export interface JwtIssuerOptions {
  /** `iss`: the authority's issuer URL or name; verifiers pin it. */
  issuer: string;
  /** `aud`: the downstream service(s) that accept the token. */
  audience: string | string[];
  /** `scope`: space-separated (RFC 8693 §4.2); omitted when empty. */
  scopes?: readonly string[];
  keys: JwtKeyRing;
  /** Configured lifetime; the token lives min(ttlMs, request maxTtlMs). Default: maxTtlMs. */
  ttlMs?: number;
  /** Credential name, for error messages. */
  credential?: string;
}

/**
 * Self-signed ES256 JWTs, one per lease: sub = the caller's identity, jti = the lease id,
 * so a revocation by lease id matches the token (leash/verify keeps the deny-set by jti).
 */
export class JwtIssuer implements Issuer {
  readonly kind = 'jwt' as const;
  private readonly scope: string | undefined;
  private closed = false;

  constructor(private readonly options: JwtIssuerOptions) {
    const scopes = options.scopes ?? [];
    for (const s of scopes) {
      // RFC 6749 §3.3 scope-token: printable ASCII without space, quote or backslash.
      if (!/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s)) {
        throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `${this.label()}: invalid scope ${JSON.stringify(s)}`, { credential: options.credential });
      }
    }
    this.scope = scopes.length ? scopes.join(' ') : undefined;
  }

  async issue(req: IssueRequest): Promise<Issued> {
    if (this.closed) throw new IssuerError('LEASH_ERR_ISSUER_CLOSED', `${this.label(req)} is closed`, { credential: req.credential });
    const ttlMs = Math.min(this.options.ttlMs ?? req.maxTtlMs, req.maxTtlMs);
    const iat = Math.floor(req.nowMs / 1000);
    const exp = Math.floor((req.nowMs + ttlMs) / 1000);
    if (!(exp > iat)) {
      throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `${this.label(req)}: TTL ${ttlMs}ms is under one second`, { credential: req.credential });
    }
    const jti = req.leaseId || randomUUID();
    const { kid, key } = this.options.keys.signer();
    const claims = this.scope === undefined ? {} : { scope: this.scope };
    // Signed with node:crypto on a KeyObject made once per key: jose's WebCrypto path cost
    // ~22 % of the authority's CPU per lease (bench/RESULTS.md). jose still verifies.
    const header = { alg: ALG, kid, typ: 'JWT' };
    // leash_cred: the credential name, so leash/verify can apply `credential` revocations.
    // leash_iat_ms: issue time to the millisecond; `iat` has whole seconds, so a token
    // re-leased right after a revocation would otherwise look issued before it.
    const payload = {
      ...claims,
      iss: this.options.issuer,
      sub: req.identity,
      aud: this.options.audience,
      jti,
      iat,
      nbf: iat,
      exp,
      [CLAIMS.credential]: req.credential,
      [CLAIMS.issuedAtMs]: req.nowMs,
    } satisfies LeashTokenClaims;
    const input = `${b64(header)}.${b64(payload)}`;
    const signature = nodeSign('sha256', Buffer.from(input), { key: keyObject(key), dsaEncoding: 'ieee-p1363' });
    const value = `${input}.${signature.toString('base64url')}`;
    this.options.keys.noteSigned(kid, exp * 1000);
    // The lease ends exactly when the token does (exp is floored to the second).
    return { value, version: jti, issuedAtMs: req.nowMs, expiresAtMs: exp * 1000 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private label(req?: IssueRequest): string {
    return issuerLabel('jwt', req?.credential ?? this.options.credential);
  }
}
