import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { didYouMean } from './cross-check.js';
import { expandEnvCollecting } from './expand.js';
import { humanIssue } from './human.js';
import { formatIssues, formatPath } from './issues.js';
import { knownKeysAt } from './schema-keys.js';
import { looksLikeSecret } from './secret-shape.js';

/**
 * Parse config text (YAML; JSON is YAML), expand `${VAR}`, validate against a schema and
 * return the frozen result. Every problem is reported at once, each naming its key path.
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  source = 'config',
): z.output<S> {
  return validateConfig(schema, readDocument(text, env, source));
}

/** YAML text → a plain object with `${VAR}` expanded (no schema yet). */
export function readDocument(text: string, env: Readonly<Record<string, string | undefined>>, source = 'config'): Record<string, unknown> {
  const { doc, problems } = readDocumentCollecting(text, env, source);
  if (problems.length) throw new ConfigError(problems);
  return doc;
}

/**
 * As readDocument, but an unset `${VAR}` is returned as a problem (its value expanded to
 * "") so that the rest of the file is still checked (leash check). YAML syntax errors and
 * a document that is not a mapping still throw: there is nothing further to check.
 */
export function readDocumentCollecting(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  source = 'config',
): { doc: Record<string, unknown>; problems: string[] } {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => `${source}: ${e.message.split('\n')[0]}`));
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Unresolved or too many aliases. yaml's message quotes the alias as written, which
    // could be anything a user pasted (a secret included): named by kind only.
    const m = String((err as Error)?.message);
    const why = /unresolved alias/i.test(m) ? 'an alias (*name) names no anchor (&name) set before it' : /alias/i.test(m) ? 'its aliases expand too far (more than 100)' : 'it is not YAML leash can read';
    throw new ConfigError([`${source}: ${why}`]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    // An empty file (or one of comments only) reads as null: say so rather than what it is not.
    throw new ConfigError([`${source}: ${raw === null || raw === undefined ? 'is empty; a config is' : 'must be'} a mapping of keys to values`]);
  }
  const { value, problems } = expandEnvCollecting(raw, env);
  return { doc: value as Record<string, unknown>, problems };
}

/** Validate an expanded document; `prefix` names where it sits in a larger file (`leash dev`). */
export function validateConfig<S extends z.ZodType>(schema: S, doc: unknown, prefix = ''): z.output<S> {
  const { value, problems } = collectConfig(schema, doc, prefix);
  if (problems.length || value === undefined) throw new ConfigError(problems);
  return value;
}

/**
 * Validate without throwing: every problem as a `key.path: reason` line (prefixed with
 * `prefix.` when the document sits in a larger file), and the frozen value only when there
 * is none. zod's wording never reaches the user: humanIssue words every issue the schema
 * did not word itself.
 *
 * A misspelt top-level key (`credentails:`) is reported as unknown with the closest known
 * key, and its value is still checked as if it were under that key (the lines name the key
 * as written), so one run reports what the next run would find behind the typo.
 */
export function collectConfig<S extends z.ZodType>(
  schema: S,
  doc: unknown,
  prefix = '',
): { value?: z.output<S>; problems: string[]; input: unknown; renamed: ReadonlyMap<string, string> } {
  const known = knownKeysAt(schema, [], doc);
  const { input, problems, renamed } = known ? aliasUnknownKeys(doc, known) : { input: doc, problems: [], renamed: new Map<string, string>() };
  const result = schema.safeParse(input, { error: humanIssue });
  if (result.success && problems.length === 0) return { value: result.data as z.output<S>, problems, input, renamed };
  if (!result.success) problems.push(...renameLines(formatIssues(result.error.issues, input, schema), renamed));
  return { problems: prefixLines(problems, prefix), input, renamed };
}

/** Lines about a document checked under corrected top-level keys, naming the keys as written. */
export function renameLines(lines: readonly string[], renamed: ReadonlyMap<string, string>): string[] {
  if (renamed.size === 0) return [...lines];
  return lines.map((line) => {
    for (const [known, written] of renamed) {
      if (line.startsWith(known) && /^[.[:]/.test(line.slice(known.length))) return written + line.slice(known.length);
    }
    return line;
  });
}

/**
 * Top-level keys not in `known`: each is a problem line, with the closest known key; the
 * returned input has them removed, or moved under that closest key when it is absent
 * (`renamed`: known key → key as written).
 */
export function aliasUnknownKeys(doc: unknown, known: readonly string[]): { input: unknown; problems: string[]; renamed: Map<string, string> } {
  const renamed = new Map<string, string>();
  const problems: string[] = [];
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return { input: doc, problems, renamed };
  const input: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (known.includes(key)) {
      input[key] = value;
      continue;
    }
    const guess = looksLikeSecret(key) ? undefined : didYouMean(key, known);
    const hint = guess !== undefined ? `; did you mean "${guess}"?` : known.length <= 16 ? ` (known keys here: ${known.join(', ')})` : '';
    problems.push(`${formatPath([key])}: unknown key${hint}`);
    if (guess !== undefined && !(guess in doc) && !renamed.has(guess)) {
      renamed.set(guess, key);
      input[guess] = value;
    }
  }
  return { input, problems, renamed };
}

/** Lines of a document that sits under `prefix` in a larger file (`leash dev`). */
export function prefixLines(lines: readonly string[], prefix: string): string[] {
  return prefix ? lines.map((l) => (l.startsWith('(root): ') ? `${prefix}: ${l.slice(8)}` : `${prefix}.${l}`)) : [...lines];
}
