/**
 * `allow` rules: `METHOD PATH`, where METHOD is an HTTP method or `*`, and PATH is a
 * `/`-separated pattern in which `*` matches exactly one segment and a final `**` matches
 * any rest (including nothing). Parsed once at config load; matched per request against
 * the already-normalised, decoded path segments.
 */
export interface AllowRule {
  readonly text: string;
  readonly method: string; // upper case, or '*'
  readonly segments: readonly string[]; // literal, '*' or a final '**'
}

const METHOD = /^(?:\*|[A-Z]+)$/;

export function parseRule(text: string): AllowRule | string {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 2) return 'must be "METHOD /path", e.g. "POST /v1/chat/completions"';
  const [method, path] = parts as [string, string];
  if (!METHOD.test(method)) return `method must be upper-case letters or "*"`;
  if (!path.startsWith('/')) return `path must start with "/"`;
  const segments = path === '/' ? [] : path.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '') return `path has an empty segment`;
    if (s === '.' || s === '..') return `path may not contain dot-segments`;
    if (s === '**' && i !== segments.length - 1) return `"**" may only be the last segment`;
    if (s !== '*' && s !== '**' && s.includes('*')) return `"*" must be a whole segment`;
  }
  return { text, method, segments };
}

/**
 * Endpoints that carry requests of their own in the body: Google APIs' `/batch` and OData's
 * `$batch` (Microsoft Graph, SharePoint, Dynamics: any method on any path, inside a
 * multipart or JSON body), Salesforce's `composite`, Elasticsearch's `_bulk` (index and
 * delete), and `graphql` (mutations: what REST spells with DELETE or PATCH). A `POST`
 * allowed by a wildcard there would allow every method and path inside it; so, for any
 * method but GET and HEAD, `*` and `**` never match such a segment: a rule must name it
 * (`POST /v1.0/$batch`). Compared as servers route them: case ignored, a `;params` or
 * `.format` suffix ignored (servlet containers, Rails' `(.:format)`).
 */
const TUNNELS = new Set(['$batch', 'batch', '_bulk', 'composite', 'graphql']);

const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Pure: the tunnel endpoint `segment` reaches (its canonical name), or undefined. A
 * non-ASCII segment is compared as a server that normalises it would route it: NFKD
 * (fullwidth `ｇ`, `＄`, `ſ`), accents dropped (Windows' best fit), and case folded through
 * upper case (Java's equalsIgnoreCase takes `ı` for i).
 */
export function tunnelSegment(segment: string): string | undefined {
  if (TUNNELS.has(segment)) return segment;
  let s = segment.toLowerCase();
  if (NON_ASCII.test(s)) s = s.normalize('NFKD').replace(/\p{M}/gu, '').toUpperCase().toLowerCase();
  const cut = s.search(/[;.]/);
  if (cut > 0) s = s.slice(0, cut);
  return TUNNELS.has(s) ? s : undefined;
}

const reads = (method: string) => method === 'GET' || method === 'HEAD';

/** Does `rule` allow `method` on `segments`? `tunnels`: let wildcards match tunnel endpoints too (only to explain a denial). */
export function ruleMatches(rule: AllowRule, method: string, segments: readonly string[], tunnels = false): boolean {
  if (rule.method !== '*' && rule.method !== method) return false;
  const pat = rule.segments;
  const guard = !tunnels && !reads(method);
  for (let i = 0; i < pat.length; i++) {
    const p = pat[i]!;
    if (p === '**') {
      if (guard) for (let j = i; j < segments.length; j++) if (tunnelSegment(segments[j]!) !== undefined) return false;
      return true;
    }
    const s = segments[i];
    if (s === undefined) return false;
    if (p === '*') {
      if (guard && tunnelSegment(s) !== undefined) return false;
    } else if (p !== s) return false;
  }
  return pat.length === segments.length;
}

export function firstMatch(rules: readonly AllowRule[], method: string, segments: readonly string[]): AllowRule | undefined {
  for (const rule of rules) if (ruleMatches(rule, method, segments)) return rule;
  return undefined;
}

/**
 * Pure, for a denial's message: the tunnel endpoint in `segments` that kept a wildcard
 * rule from allowing the request (it would have, were the endpoint named), or undefined.
 */
export function tunnelDenied(rules: readonly AllowRule[], method: string, segments: readonly string[]): string | undefined {
  if (reads(method) || !rules.some((r) => ruleMatches(r, method, segments, true))) return undefined;
  for (const s of segments) {
    const t = tunnelSegment(s);
    if (t !== undefined) return t;
  }
  return undefined;
}
