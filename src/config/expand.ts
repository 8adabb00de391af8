import { ConfigError } from '../core/errors.js';

/**
 * `${VAR}` and `${VAR:-default}` expansion in every string value of a parsed document
 * (never in the raw text, so a variable cannot inject YAML structure). `$${` is a literal `${`.
 * An unset variable without a default is an error naming the key path.
 */
const REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export function expandEnv(doc: unknown, env: Readonly<Record<string, string | undefined>>): unknown {
  const { value, problems } = expandEnvCollecting(doc, env);
  if (problems.length) throw new ConfigError(problems);
  return value;
}

/** As expandEnv, but returns the problems (an unset variable expands to "") instead of throwing (leash check). */
export function expandEnvCollecting(doc: unknown, env: Readonly<Record<string, string | undefined>>): { value: unknown; problems: string[] } {
  const problems: string[] = [];
  const walk = (value: unknown, path: string): unknown => {
    if (typeof value === 'string') return expandString(value, path, env, problems);
    if (Array.isArray(value)) return value.map((v, i) => walk(v, `${path}[${i}]`));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = walk(v, path ? `${path}.${k}` : k);
      return out;
    }
    return value;
  };
  return { value: walk(doc, ''), problems };
}

function expandString(text: string, path: string, env: Readonly<Record<string, string | undefined>>, problems: string[]): string {
  if (!text.includes('${')) return text;
  return text.replace(REF, (whole, name: string | undefined, fallback: string | undefined) => {
    if (whole === '$${') return '${';
    const value = env[name!];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    if (value === '') return '';
    problems.push(`${path || '(root)'}: environment variable ${name} is not set (use \${${name}:-default} for a default)`);
    return '';
  });
}
