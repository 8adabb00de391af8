import type { z } from 'zod';

/** Keys whose values are never echoed back in an error message, whatever they hold. */
const SENSITIVE_KEY = /credential|secret|token|password|key$/i;
const MAX_ECHO = 80;

/**
 * Turns zod issues into `key.path: reason (got VALUE)` lines (DESIGN §4), looking the bad
 * value up in the input so the user sees what they wrote.
 */
export function formatIssues(issues: readonly z.core.$ZodIssue[], input: unknown): string[] {
  return issues.map((issue) => {
    const path = issue.path.map(String);
    const where = formatPath(path) || '(root)';
    if (issue.code === 'unrecognized_keys') {
      return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    }
    const value = lookup(input, path);
    const sensitive = path.some((p) => SENSITIVE_KEY.test(p));
    const got = value === undefined ? ' (missing)' : sensitive ? '' : ` (got ${echo(value)})`;
    return `${where}: ${issue.message}${got}`;
  });
}

export function formatPath(path: readonly string[]): string {
  let out = '';
  for (const p of path) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

function lookup(input: unknown, path: readonly string[]): unknown {
  let cur: unknown = input;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

function echo(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return text.length > MAX_ECHO ? `${text.slice(0, MAX_ECHO)}…` : text;
}
