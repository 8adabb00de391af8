import type { z } from 'zod';
import { didYouMean } from './cross-check.js';
import { REQUIRED } from './human.js';
import { knownKeysAt } from './schema-keys.js';
import { looksLikeSecret } from './secret-shape.js';

/**
 * Keys whose values are never echoed back in an error message, whatever they hold.
 * `format` is among them: a format without {{credential}} is usually a secret written inline.
 */
const SENSITIVE_KEY = /credential|secret|token|password|key$|^format$/i;
/** The user:password part of a URL (e.g. an upstream written with one) is not echoed either. */
const USERINFO = /(\/\/)[^/?#@\s"]*@/g;
/** Nor is a URL's query or fragment (`?key=…`): API keys travel there. */
const URL_QUERY = /(\b[a-z][a-z0-9+.-]*:\/+[^\s"?#]*)[?#][^\s"]*/gi;
/** A value's leading `scheme:` and its slashes, however many (`redis:/`, `https:///` are typos, not other text). */
const SCHEME = /^\s*[a-z][a-z0-9+.-]*:\/*/i;
const MAX_ECHO = 80;

/**
 * Turns zod issues into `key.path: reason (got VALUE)` lines (DESIGN §4), looking the bad
 * value up in the input so the user sees what they wrote. With the schema, an unknown key
 * is named with the closest key known at that place ("did you mean …?"), and the "is
 * required" for that closest key, when it is absent, is not reported as well (one typo,
 * one line).
 */
export function formatIssues(issues: readonly z.core.$ZodIssue[], input: unknown, schema?: z.ZodType): string[] {
  const lines: Array<{ path: string; line: string }> = [];
  const misspelt = new Set<string>();
  for (const issue of issues.flatMap(specific)) {
    const path = issue.path.map(String);
    const where = formatPath(path) || '(root)';
    if (issue.code === 'unrecognized_keys') {
      const known = schema ? knownKeysAt(schema, issue.path, input) : undefined;
      for (const key of issue.keys) {
        const guess = known && !looksLikeSecret(key) ? didYouMean(key, known) : undefined;
        if (guess !== undefined && lookup(input, [...path, guess]) === undefined) misspelt.add(formatPath([...path, guess]));
        const hint = guess !== undefined ? `; did you mean "${guess}"?` : known && known.length <= 16 ? ` (known keys here: ${known.join(', ')})` : '';
        lines.push({ path: '', line: `${formatPath([...path, key])}: unknown key${hint}` });
      }
      continue;
    }
    const value = lookup(input, path);
    if (value === undefined && issue.code === 'invalid_type') {
      lines.push({ path: where, line: `${where}: ${REQUIRED}${issue.message === REQUIRED ? '' : `; ${issue.message}`}` });
      continue;
    }
    // A value shaped like a key is not echoed, whatever key it sits under.
    const sensitive = path.some((p) => SENSITIVE_KEY.test(p) || looksLikeSecret(p)) || (typeof value === 'string' && looksLikeSecret(value));
    const got = NO_ECHO.has(issue) || sensitive ? '' : value === undefined ? ' (missing)' : ` (got ${echo(value)})`;
    lines.push({ path: where, line: `${where}: ${issue.message}${got}` });
  }
  return lines.filter((l) => !misspelt.has(l.path)).map((l) => l.line);
}

const NO_ECHO = new WeakSet<object>();

/** A branch of a union that failed only on its details, not on the shape of the input. */
const fitsShape = (branch: readonly z.core.$ZodIssue[]) =>
  !branch.some((i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'unrecognized_keys' || i.code === 'invalid_union'));

/**
 * The most specific issues behind a generic one: a bad record key reports its own rule,
 * and a union where exactly one alternative fits the shape reports that alternative's
 * problems ("a lease name needs an authority section") instead of "must be A or B".
 */
function specific(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code === 'invalid_key') {
    // The key is at fault, not its value: say so without echoing the whole value.
    const key = String(issue.path[issue.path.length - 1]);
    return issue.issues.map((i) => {
      const out = { code: 'custom', path: issue.path.slice(0, -1), message: `key ${quoteKey(key)}: ${i.message}` } as z.core.$ZodIssue;
      NO_ECHO.add(out);
      return out;
    });
  }
  if (issue.code === 'invalid_union') {
    const fitting = issue.errors.filter(fitsShape);
    if (fitting.length === 1) return fitting[0]!.flatMap((i) => specific({ ...i, path: [...issue.path, ...i.path] } as z.core.$ZodIssue));
  }
  return [issue];
}

export function formatPath(path: readonly string[]): string {
  let out = '';
  for (const p of path) out += looksLikeSecret(p) ? (out ? '.(a secret-like key)' : '(a secret-like key)') : /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out;
}

/** A key as written, unless it looks like a secret (a key pasted in as a map key). */
function quoteKey(key: string): string {
  return looksLikeSecret(key) ? '(a key that looks like a secret, not shown)' : JSON.stringify(key);
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
  // Inside an echoed object or list, values under sensitive keys are hidden too.
  const hide = (k: string, v: unknown) =>
    (k !== '' && (SENSITIVE_KEY.test(k) || looksLikeSecret(k))) || (typeof v === 'string' && looksLikeSecret(v)) ? '…' : typeof v === 'string' ? hideQuery(hideUserinfo(v)) : v;
  const text = (JSON.stringify(value, hide) ?? String(value)).replace(USERINFO, '$1…@').replace(URL_QUERY, '$1?…');
  return text.length > MAX_ECHO ? `${text.slice(0, MAX_ECHO)}…` : text;
}

/**
 * A value that may be a URL, cut at its query or fragment (`?key=…`). URL_QUERY finds
 * only well-formed `scheme://` text without spaces, but the value a config error repeats
 * is the one that did not parse: `https:host/v1?key=…`, `http//host?key=…`, `host/v1?key=…`,
 * `https://a b/?key=…`. So any `?` or `#` after a `/`, `:` or `.`, or followed by a `=`,
 * ends what is shown.
 */
export function hideQuery(text: string): string {
  const q = text.search(/[?#]/);
  if (q < 0) return text;
  return /[/:.]/.test(text.slice(0, q)) || text.includes('=', q) ? `${text.slice(0, q)}?…` : text;
}

/**
 * A URL as it may be printed (check output, logs, errors): without `user:password@`, query
 * or fragment, where API keys travel. Text that does not parse is cut at the first `?`/`#`.
 */
export function redactUrl(url: URL | string): string {
  const raw = String(url);
  const asText = () => hideUserinfo(raw).replace(USERINFO, '$1…@').replace(/[?#].*$/s, '?…');
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return asText();
  }
  // A password holding `#`, `?` or `/` parses as a port, fragment or path (`redis://u:123#x@h`): the text's own split wins.
  if (typeof url === 'string' && !u.username && !u.password && hideUserinfo(raw) !== raw) return asText();
  const hidden = u.search || u.hash;
  const auth = u.username || u.password ? '…@' : '';
  u.username = '';
  u.password = '';
  u.search = '';
  u.hash = '';
  const text = auth ? u.href.replace('//', `//${auth}`) : u.href;
  return hidden ? `${text}?…` : text;
}

/**
 * Text that may be a URL as written, with what may be its `user:password@` hidden: all
 * of it up to the last `@`. A password may itself hold `@`, `#`, `/`, `"` or spaces, and a
 * mistyped URL (`redis:/`, `rediss//`, `http://` where `redis://` belongs) is exactly the
 * one that fails to parse, so neither a URL parser nor the first `@` can say where the
 * password ends. Kept as written: text with no `@`, an address (`a@b`, no `:` before the
 * `@`), and an `@` in a path (`/users/@me`: a `/` and no `:` before it).
 */
export function hideUserinfo(text: string): string {
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const scheme = SCHEME.exec(text)?.[0] ?? '';
  if (at < scheme.length) return text;
  const before = text.slice(scheme.length, at);
  if (!before.includes(':') && (scheme === '' || before.includes('/'))) return text;
  return `${scheme}…@${text.slice(at + 1)}`;
}
