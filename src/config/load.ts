import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { expandEnv } from './expand.js';
import { formatIssues } from './issues.js';

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
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => `${source}: ${e.message.split('\n')[0]}`));
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([`${source}: must be a mapping of keys to values`]);
  }
  return expandEnv(raw, env) as Record<string, unknown>;
}

/** Validate an expanded document; `prefix` names where it sits in a larger file (`leash dev`). */
export function validateConfig<S extends z.ZodType>(schema: S, doc: unknown, prefix = ''): z.output<S> {
  const result = schema.safeParse(doc);
  if (!result.success) {
    const lines = formatIssues(result.error.issues, doc);
    throw new ConfigError(prefix ? lines.map((l) => (l.startsWith('(root): ') ? `${prefix}: ${l.slice(8)}` : `${prefix}.${l}`)) : lines);
  }
  return result.data;
}
