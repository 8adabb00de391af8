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

export function ruleMatches(rule: AllowRule, method: string, segments: readonly string[]): boolean {
  if (rule.method !== '*' && rule.method !== method) return false;
  const pat = rule.segments;
  for (let i = 0; i < pat.length; i++) {
    const p = pat[i]!;
    if (p === '**') return true;
    const s = segments[i];
    if (s === undefined) return false;
    if (p !== '*' && p !== s) return false;
  }
  return pat.length === segments.length;
}

export function firstMatch(rules: readonly AllowRule[], method: string, segments: readonly string[]): AllowRule | undefined {
  for (const rule of rules) if (ruleMatches(rule, method, segments)) return rule;
  return undefined;
}
