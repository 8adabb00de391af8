import { compilePolicy, PolicyError } from '../authority/policy/policy.js';
import { policyCredentialProblems } from './authority.js';
import { unknownLeaseNames } from './cross-check.js';
import { formatPath } from './issues.js';
import { looksLikeSecret } from './secret-shape.js';

/**
 * The checks that look across keys (a policy naming an undefined credential, an identity
 * pattern, a lease name with no authority to lease from), run on the raw document so that
 * leash check reports them even when other keys have schema errors: a zod refinement on
 * the whole object only runs once every key parses. Each reads only the parts it needs,
 * and skips what is not shaped well enough to judge (the schema reports that). Pure.
 */
type Raw = Record<string, unknown>;

const isMap = (v: unknown): v is Raw => v !== null && typeof v === 'object' && !Array.isArray(v);
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/;

export function authorityProblems(raw: Raw): string[] {
  const problems: string[] = [];
  const credentials = isMap(raw.credentials) ? Object.keys(raw.credentials) : undefined;
  // Without a credentials mapping every name would be "undefined": one line (the schema's) says why.
  if (credentials) for (const { path, message } of policyCredentialProblems(raw.policies, credentials)) problems.push(`${formatPath(path.map(String))}: ${message}`);
  if (Array.isArray(raw.policies)) {
    const trustDomain = typeof raw.trustDomain === 'string' && TRUST_DOMAIN.test(raw.trustDomain) ? raw.trustDomain : 'leash.local';
    raw.policies.forEach((p: unknown, i) => {
      const identities = isMap(p) ? p.identities : undefined;
      if (!Array.isArray(identities) || identities.length === 0) return;
      // Only the identity patterns are judged here; a non-string entry is the schema's to report.
      const patterns = identities.map((id: unknown) => (typeof id === 'string' && id !== '' ? id : 'join:placeholder'));
      try {
        compilePolicy([{ identities: patterns, credentials: ['*'], maxTtlMs: 1 }], trustDomain);
      } catch (err) {
        if (!(err instanceof PolicyError)) throw err;
        for (const issue of err.issues) problems.push(issue.replace(/^policies\[0\]/, `policies[${i}]`));
      }
    });
  }
  return problems;
}

const NEEDS_AUTHORITY = 'a lease name needs an authority section; use { file: PATH } or { env: NAME } for a local secret';

export function sidecarProblems(raw: Raw): string[] {
  if (raw.authority !== undefined || !isMap(raw.routes)) return [];
  const problems: string[] = [];
  for (const [name, route] of Object.entries(raw.routes)) {
    const credential = isMap(route) ? route.credential : undefined;
    // A secret-shaped name is refused by the schema with its own message.
    if (typeof credential === 'string' && !looksLikeSecret(credential)) problems.push(`${formatPath(['routes', name, 'credential'])}: ${NEEDS_AUTHORITY}`);
  }
  return problems;
}

/** `leash dev`: a route leasing a name the authority section does not define. */
export function devProblems(authority: unknown, sidecar: unknown): string[] {
  if (!isMap(authority) || !isMap(authority.credentials) || !isMap(sidecar) || !isMap(sidecar.routes)) return [];
  const routes = Object.fromEntries(Object.entries(sidecar.routes).map(([k, v]) => [k, isMap(v) ? v : undefined]));
  return unknownLeaseNames(routes, Object.keys(authority.credentials));
}

/**
 * Merges problem lines from several checks: a later source's line for a key path an earlier
 * source already reported is dropped (an unset `${VAR}` is not also "must not be empty";
 * the schema's refinement and the raw check say the same thing once).
 */
export function mergeProblems(...sources: ReadonlyArray<readonly string[]>): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const lines of sources) {
    const paths = new Set<string>();
    for (const line of lines) {
      const path = pathOf(line);
      if (seen.has(path)) continue;
      out.push(line);
      paths.add(path);
    }
    for (const p of paths) seen.add(p);
  }
  return out;
}

function pathOf(line: string): string {
  const i = line.indexOf(': ');
  return i < 0 ? line : line.slice(0, i);
}
