import { LeashError, type ErrorContext } from '../../core/errors.js';

/**
 * Which identity may lease which credential, and for how long. Pure: compiled once from
 * the authority config (`policies:`, DESIGN §4), then asked per lease request.
 *
 * - Identity patterns are SPIFFE IDs with globs: `*` matches within one path segment
 *   (never a `/`), `**` matches anything, `/` included (`.../agents/**` matches every
 *   identity below `agents/`, not `agents` itself). Every other character is literal.
 * - `join:NAME-GLOB` is shorthand for `spiffe://<trustDomain>/join/NAME-GLOB`, the
 *   identities given to sidecars bootstrapped with a join token.
 * - Credentials are exact names, or `*` for every credential.
 * - Default deny: a request no rule matches is refused.
 * - Rules only grant, they are never combined into a restriction: when several rules
 *   match, the request is allowed with the LARGEST of their maxTtl. A narrow rule cannot
 *   shorten what a broader rule already grants; to give a subset a shorter TTL, keep it
 *   out of the broader rule.
 * - The identity asked about must be a well-formed SPIFFE ID (no empty, `.` or `..`
 *   segments, no percent-encoding), so a glob like `**` cannot be steered by path tricks.
 */

export const POLICY_ERROR_CODE = 'LEASH_ERR_POLICY';

/** The policies section cannot be compiled; the message names `policies[i].<key>` and why. */
export class PolicyError extends LeashError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[], context: ErrorContext = {}) {
    super(POLICY_ERROR_CODE, issues.length === 1 ? issues[0]! : `invalid policies:\n  ${issues.join('\n  ')}`, context);
    this.issues = issues;
  }
}

export interface PolicyRule {
  identities: readonly string[];
  credentials: readonly string[];
  maxTtlMs: number;
}

export interface CompiledRule {
  /** Position in the configured list, for messages and audit. */
  readonly index: number;
  /** Identity patterns with `join:` shorthand expanded. */
  readonly identities: readonly string[];
  readonly credentials: readonly string[];
  readonly maxTtlMs: number;
}

export interface CompiledPolicy {
  readonly trustDomain: string;
  readonly rules: readonly CompiledRule[];
}

/** Alias of CompiledPolicy. */
export type Policy = CompiledPolicy;

export type PolicyDecision = { allowed: true; maxTtlMs: number } | { allowed: false; reason: string };

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
/** SPIFFE ID path segment characters (spiffe-id spec §2.2). */
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const PATTERN_REST = /^[A-Za-z0-9._*/-]+$/;
const JOIN_NAME_GLOB = /^[a-z0-9._*-]{1,63}$/;
const CREDENTIAL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Compiled matchers, kept out of the (frozen, printable) Policy object. */
const matchers = new WeakMap<CompiledRule, readonly RegExp[]>();

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        re += '.*';
        i++;
      } else re += '[^/]*';
    } else re += c.replace(/[.\\+?^${}()|[\]-]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function expandIdentity(entry: string, trustDomain: string): { pattern?: string; problem?: string } {
  if (entry.startsWith('join:')) {
    const name = entry.slice('join:'.length);
    if (!JOIN_NAME_GLOB.test(name)) return { problem: `"join:" must be followed by a name glob of [a-z0-9._-] and * (got ${JSON.stringify(entry)})` };
    return { pattern: `spiffe://${trustDomain}/join/${name}` };
  }
  if (entry.startsWith('spiffe://')) {
    const rest = entry.slice('spiffe://'.length);
    if (!PATTERN_REST.test(rest) || !rest.includes('/')) {
      return { problem: `must be spiffe://<trust domain>/<path> with only [A-Za-z0-9._-], / and * (got ${JSON.stringify(entry)})` };
    }
    return { pattern: entry };
  }
  return { problem: `must start with "spiffe://" or "join:" (got ${JSON.stringify(entry)})` };
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Validate and compile. Throws PolicyError listing every problem, each with its key path. */
export function compilePolicy(rules: readonly PolicyRule[], trustDomain: string): CompiledPolicy {
  const issues: string[] = [];
  if (!TRUST_DOMAIN.test(trustDomain)) issues.push(`trustDomain: must be lowercase letters, digits, ".", "-" or "_" (got ${JSON.stringify(trustDomain)})`);
  const compiled: CompiledRule[] = [];
  rules.forEach((rule, i) => {
    const at = `policies[${i}]`;
    const identities: string[] = [];
    const regexps: RegExp[] = [];
    if (!Array.isArray(rule.identities) || rule.identities.length === 0) issues.push(`${at}.identities: must list at least one identity pattern`);
    else
      rule.identities.forEach((entry, j) => {
        const { pattern, problem } = typeof entry === 'string' ? expandIdentity(entry, trustDomain) : { problem: 'must be a string' };
        if (problem !== undefined || pattern === undefined) return void issues.push(`${at}.identities[${j}]: ${problem}`);
        identities.push(pattern);
        regexps.push(globToRegExp(pattern));
      });
    if (!Array.isArray(rule.credentials) || rule.credentials.length === 0) issues.push(`${at}.credentials: must list at least one credential name, or "*"`);
    else
      rule.credentials.forEach((c, j) => {
        if (typeof c !== 'string' || (c !== '*' && !CREDENTIAL.test(c))) issues.push(`${at}.credentials[${j}]: must be a credential name or "*" (got ${JSON.stringify(c)})`);
      });
    if (typeof rule.maxTtlMs !== 'number' || !Number.isFinite(rule.maxTtlMs) || rule.maxTtlMs <= 0) {
      issues.push(`${at}.maxTtl: must be a positive duration (got ${JSON.stringify(rule.maxTtlMs)})`);
    }
    const c: CompiledRule = { index: i, identities, credentials: [...(Array.isArray(rule.credentials) ? rule.credentials : [])], maxTtlMs: rule.maxTtlMs };
    matchers.set(c, regexps);
    compiled.push(c);
  });
  if (issues.length > 0) throw new PolicyError(issues);
  return deepFreeze({ trustDomain, rules: compiled });
}

/** True for a well-formed SPIFFE ID: spiffe://<trust domain>/<seg>(/<seg>)*, no `.`/`..` segments. */
export function isSpiffeId(id: string): boolean {
  if (typeof id !== 'string' || id.length > 2048 || !id.startsWith('spiffe://')) return false;
  const [domain, ...segments] = id.slice('spiffe://'.length).split('/');
  if (domain === undefined || !TRUST_DOMAIN.test(domain) || segments.length === 0) return false;
  return segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..');
}

function quote(s: string): string {
  return JSON.stringify(s.length > 256 ? `${s.slice(0, 256)}…` : s);
}

/** May `identity` lease `credential`? Allowed with the largest maxTtl of the matching rules; default deny. */
export function decide(policy: CompiledPolicy, identity: string, credential: string): PolicyDecision {
  if (!isSpiffeId(identity)) return { allowed: false, reason: `identity ${quote(String(identity))} is not a valid SPIFFE ID` };
  let maxTtlMs = -1;
  for (const rule of policy.rules) {
    if (!rule.credentials.includes('*') && !rule.credentials.includes(credential)) continue;
    if (!(matchers.get(rule) ?? []).some((re) => re.test(identity))) continue;
    maxTtlMs = Math.max(maxTtlMs, rule.maxTtlMs);
  }
  if (maxTtlMs < 0) return { allowed: false, reason: `no policy allows identity ${quote(identity)} to lease credential ${quote(String(credential))}` };
  return { allowed: true, maxTtlMs };
}
