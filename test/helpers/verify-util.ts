import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, base64url, generateKeyPair } from 'jose';
import type { Clock } from '../../src/core/clock.js';
import { VerifyError } from '../../src/verify/index.js';
import { startAuthority, type TestAuthority } from './authority.js';
import { waitFor } from './wait.js';

/** Helpers for test/integration/verify*.test.ts: an authority with a key directory, leases, forged tokens. */

export const TRUST = 'leash.local';
export const ISS = 'https://127.0.0.1';
export const id = (name: string) => `spiffe://${TRUST}/join/${name}`;

export const VERIFY_AUTHORITY_CONFIG = {
  trustDomain: TRUST,
  credentials: {
    search: { kind: 'jwt', audience: 'search-api', scopes: ['search:read', 'search:write'], ttl: '5m' },
    other: { kind: 'jwt', audience: 'other-api', ttl: '5m' },
  },
  policies: [{ identities: ['join:agent-*'], credentials: ['search', 'other'], maxTtl: '1h' }],
};

/** A wall clock that tests can move forward; monotonic moves with it. */
export class ShiftClock implements Clock {
  offsetMs = 0;
  wallMs(): number {
    return Date.now() + this.offsetMs;
  }
  monotonicMs(): number {
    return performance.now() + this.offsetMs;
  }
}

export interface KeyedAuthority extends TestAuthority {
  /** Times the JWKS document was served. */
  jwksServed(): number;
  /** Write a new signing key (sorts last: it signs from now on) and reload the ring. */
  rotate(name: string): Promise<string>;
  /** A lease's JWT for `agent` (join name) and `credential`. */
  lease(agent: string, credential?: string): Promise<{ token: string; lease: string }>;
}

const pem = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

export async function startKeyedAuthority(options: { clock?: Clock; config?: Record<string, unknown> } = {}): Promise<KeyedAuthority> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-verify-keys-'));
  writeFileSync(join(dir, '0001.pem'), pem(), { mode: 0o600 });
  const authority = await startAuthority({ ...VERIFY_AUTHORITY_CONFIG, signing: { keysDir: dir }, ...options.config }, { clock: options.clock });
  const keys = authority.running.keys;
  let served = 0;
  const original = keys.jwks.bind(keys);
  // The HTTP server calls keys.jwks() per request: counting here counts requests served.
  keys.jwks = () => {
    served++;
    return original();
  };
  return {
    ...authority,
    jwksServed: () => served,
    rotate: async (name) => {
      writeFileSync(join(dir, `${name}.pem`), pem(), { mode: 0o600 });
      await keys.reload();
      return keys.signer().kid;
    },
    lease: async (agent, credential = 'search') => {
      const res = await authority.running.authority.lease(id(agent), { credential });
      return { token: res.value, lease: res.lease };
    },
    stop: async () => {
      await authority.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function jwksUrl(a: TestAuthority): string {
  return `${a.url}/.well-known/jwks.json`;
}

/** The code of a VerifyError a promise rejects with (fails the test on anything else). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof VerifyError)) throw err;
    return err.code;
  }
  return 'passed';
}

const part = (o: unknown) => base64url.encode(JSON.stringify(o));

/** Flip one bit in the signature. */
export function tamperSignature(token: string): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  sig[sig.length - 1] = sig[sig.length - 1]! ^ 1;
  return `${h}.${p}.${sig.toString('base64url')}`;
}

/** Same header and signature, payload rewritten (e.g. more scopes). */
export function tamperPayload(token: string, change: (p: Record<string, unknown>) => void): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  change(payload);
  return `${h}.${part(payload)}.${s}`;
}

export function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

export function headerOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** The same claims with alg none and no signature. */
export function algNone(token: string): string {
  return `${part({ alg: 'none', typ: 'JWT', kid: headerOf(token).kid })}.${token.split('.')[1]}.`;
}

/** The classic confusion: HS256 with the authority's public key (JWK JSON and PEM forms) as the HMAC secret. */
export async function hs256WithPublicKey(token: string, jwks: { keys: Record<string, unknown>[] }): Promise<string[]> {
  const kid = headerOf(token).kid as string;
  const jwk = jwks.keys.find((k) => k.kid === kid)!;
  const { createPublicKey } = await import('node:crypto');
  const pemKey = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
  const claims = claimsOf(token);
  const out: string[] = [];
  for (const secret of [JSON.stringify(jwk), pemKey]) {
    out.push(await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' }).sign(new TextEncoder().encode(secret)));
  }
  return out;
}

/** An RS256 token under the authority's kid, signed by a key of our own. */
export async function rs256(token: string): Promise<string> {
  const { privateKey } = await generateKeyPair('RS256');
  return new SignJWT(claimsOf(token)).setProtectedHeader({ alg: 'RS256', kid: headerOf(token).kid as string }).sign(privateKey);
}

/** An ES256 token with the same claims, signed by a stranger's key under a made-up kid. */
export async function foreignEs256(token: string, kid = 'stranger'): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT(claimsOf(token)).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' }).sign(privateKey);
}

/** Poll until `pred` holds (default 1 s): the revocation latency budget. */
export async function within(pred: () => Promise<boolean> | boolean, ms = 1000, stepMs = 10): Promise<number> {
  const start = Date.now();
  await waitFor(pred, { timeoutMs: ms, intervalMs: stepMs });
  return Date.now() - start;
}

export class WarnLog {
  readonly entries: { obj: Record<string, unknown>; msg: string }[] = [];
  warn = (obj: Record<string, unknown>, msg: string): void => {
    this.entries.push({ obj, msg });
  };
  has(re: RegExp): boolean {
    return this.entries.some((e) => re.test(e.msg));
  }
}

/** A token signed with the authority's current signing key (for claims it does not issue yet). */
export async function signAsAuthority(a: TestAuthority, claims: Record<string, unknown>): Promise<string> {
  const { kid, key } = a.running.keys.signer();
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' }).sign(key);
}
