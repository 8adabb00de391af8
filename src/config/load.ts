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
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(doc.errors.map((e) => `${source}: ${e.message.split('\n')[0]}`));
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([`${source}: must be a mapping of keys to values`]);
  }
  const expanded = expandEnv(raw, env);
  const result = schema.safeParse(expanded);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues, expanded));
  return result.data;
}
