import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { authoritySchema } from '../../src/config/authority.js';
import { injectorSchema } from '../../src/config/injector.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { parseConfig } from '../../src/config/load.js';
import { defOf as defOfSchema, type Def } from '../../src/config/schema-keys.js';
import { parseDuration } from '../../src/core/duration.js';

/**
 * The config reference tables must not drift from the zod schemas (src/config):
 *
 * - every key a schema accepts (objects and records walked; a union, such as a credential
 *   source, an `inject` form or a Redis target, is one key, its forms described in the
 *   row) has a row in its table: docs/configuration.md for the sidecar (top level and
 *   `routes.<name>`) and the injector, docs/authority.md for the authority (top level,
 *   `credentials.<name>` per kind, `policies[]`, connections);
 * - every row names a key the schema accepts (through unions too: `inject.header`);
 * - a row's default is the schema's default, where the schema has one.
 *
 * A row's key cell may name several keys (`tls.certFile`, `tls.keyFile`; `ports.proxy` /
 * `ports.admin`; a following `.perMinute` is relative to the key before it).
 */
const ROOT = process.cwd();
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');

/** The schema's definition (schema-keys.ts), there for every schema walked here. */
const defOf = (s: unknown): Def => defOfSchema(s)!;
const WRAPPERS = new Set(['optional', 'nullable', 'readonly', 'catch', 'nonoptional']);

interface Key {
  path: string;
  /** The schema's default (output value), if it has one. */
  default?: { value: unknown };
}

/** Every key of a schema, unions not entered. */
function keysOf(schema: unknown, prefix = '', out: Key[] = [], dflt?: { value: unknown }): Key[] {
  const d = defOf(schema);
  if (d.type === 'pipe') return keysOf(d.in, prefix, out, dflt);
  if (WRAPPERS.has(d.type)) return keysOf(d.innerType, prefix, out, dflt);
  if (d.type === 'default') return keysOf(d.innerType, prefix, out, { value: d.defaultValue });
  if (d.type === 'prefault') return keysOf(d.innerType, prefix, out, dflt);
  if (d.type === 'lazy') return keysOf(d.getter!(), prefix, out, dflt);
  if (d.type === 'object') {
    for (const [k, v] of Object.entries(d.shape ?? {})) keysOf(v, prefix ? `${prefix}.${k}` : k, out);
    return out;
  }
  if (d.type === 'record') return keysOf(d.valueType, `${prefix}.<name>`, out);
  out.push({ path: prefix, ...(dflt ? { default: dflt } : {}) });
  return out;
}

/** Every path a schema accepts, unions and arrays entered (`inject.header`, `policies[].maxTtl`). */
function allPaths(schema: unknown, prefix = '', out = new Set<string>(), depth = 0): Set<string> {
  if (depth > 40) return out;
  const d = defOf(schema);
  if (prefix) out.add(prefix);
  if (d.type === 'pipe') return allPaths(d.in, prefix, out, depth + 1);
  if (WRAPPERS.has(d.type) || d.type === 'default' || d.type === 'prefault') return allPaths(d.innerType, prefix, out, depth + 1);
  if (d.type === 'lazy') return allPaths(d.getter!(), prefix, out, depth + 1);
  if (d.type === 'union') for (const o of d.options ?? []) allPaths(o, prefix, out, depth + 1);
  if (d.type === 'object') for (const [k, v] of Object.entries(d.shape ?? {})) allPaths(v, prefix ? `${prefix}.${k}` : k, out, depth + 1);
  if (d.type === 'record') allPaths(d.valueType, `${prefix}.<name>`, out, depth + 1);
  if (d.type === 'array') allPaths(d.element, `${prefix}[]`, out, depth + 1);
  return out;
}

interface Row {
  where: string;
  keys: string[];
  /** The type cell: `{ cpu?, memory? }` documents the keys under the row's key too. */
  type: string;
  default: string;
}

/** The rows of the first table after `heading` (a line starting with it), keys prefixed. */
function tableRows(file: string, heading: string, prefix: string, keyCol = 0, defaultCol = 2): Row[] {
  const lines = read(file).split('\n');
  let i = lines.findIndex((l) => l.startsWith(heading));
  expect(i, `${file}: no heading "${heading}"`).toBeGreaterThanOrEqual(0);
  while (i < lines.length && !lines[i]!.startsWith('|')) i++;
  const rows: Row[] = [];
  let kind = '';
  for (i += 2; i < lines.length && lines[i]!.startsWith('|'); i++) {
    const cells = lines[i]!.replace(/\\\|/g, '\u0000').split('|').slice(1, -1).map((c) => c.trim().replace(/\u0000/g, '|'));
    // The credentials table: `| kind | key | … |`, the kind cell empty on continuation rows.
    let p = prefix;
    if (keyCol === 1) {
      kind = cells[0] ? cells[0].replace(/`/g, '') : kind;
      p = `${prefix}[${kind}].`;
    }
    const keys: string[] = [];
    let last = '';
    for (const m of cells[keyCol]!.matchAll(/`([^`]+)`/g)) {
      let k = m[1]!;
      if (k.startsWith('.') && last) k = last.replace(/\.[^.]+$/, '') + k;
      keys.push(k);
      last = k;
    }
    rows.push({ where: `${file}:${i + 1}`, keys: keys.map((k) => p + k), type: cells[defaultCol - 1] ?? '', default: cells[defaultCol] ?? '' });
  }
  expect(rows.length, `${file}: no table after "${heading}"`).toBeGreaterThan(0);
  return rows;
}

/** Does the doc's default cell state the schema's default? */
function sameDefault(cell: string, value: unknown): boolean {
  const words = [...cell.matchAll(/`([^`]*)`/g)].map((m) => m[1]!);
  const norm = (v: unknown): string[] => {
    if (v && typeof v === 'object' && 'host' in v && 'port' in v) return [`${(v as { host: string }).host}:${(v as { port: number }).port}`];
    if (Array.isArray(v)) return [JSON.stringify(v)];
    return typeof v === 'string' ? [v, JSON.stringify(v)] : [String(v)];
  };
  const want = norm(value);
  return words.some((w) => {
    if (want.includes(w)) return true;
    if (typeof value === 'number' && parseDuration(w) === value) return true;
    if (typeof value === 'number' && Number(w.replace(/[ ,_]/g, '')) === value) return true;
    if (Array.isArray(value)) {
      try {
        return JSON.stringify(JSON.parse(w)) === JSON.stringify(value);
      } catch {
        return false;
      }
    }
    return false;
  });
}

interface Reference {
  name: string;
  keys: Key[];
  paths: Set<string>;
  rows: Row[];
  /** Defaults the doc states differently on purpose, by key: why. */
  defaultsExplained?: Record<string, string>;
  /** A partial table (a topic's keys, repeated from the full reference): not every key need be in it. */
  partial?: boolean;
}

const credentialKinds = (() => {
  // credentials.<name> is a union of one strict object per kind: its keys per kind.
  const record = defOf(defOf(authoritySchema).type === 'pipe' ? defOf(defOf(authoritySchema).in).shape!.credentials : defOf(authoritySchema).shape!.credentials);
  let value: unknown = record.valueType;
  while (defOf(value).type !== 'union') value = defOf(value).in ?? defOf(value).innerType;
  return defOf(value).options!;
})();

function authorityKeys(): { keys: Key[]; paths: Set<string> } {
  const keys = keysOf(authoritySchema).filter((k) => k.path !== 'credentials.<name>');
  const paths = allPaths(authoritySchema);
  for (const option of credentialKinds) {
    const kind = String((defOf(defOf(option).shape!.kind) as { values?: unknown[] }).values?.[0]);
    for (const k of keysOf(option)) {
      if (k.path === 'kind') continue;
      const path = `credentials.<name>[${kind}].${k.path}`;
      keys.push({ ...k, path });
      paths.add(path);
    }
  }
  return { keys, paths };
}

const REFERENCES: Reference[] = [
  {
    name: 'sidecar (docs/configuration.md)',
    ...(() => ({ keys: keysOf(sidecarSchema), paths: allPaths(sidecarSchema) }))(),
    rows: [
      ...tableRows('docs/configuration.md', '### Top level', ''),
      ...tableRows('docs/configuration.md', '### `routes.<name>`', 'routes.<name>.'),
    ],
    defaultsExplained: {
      'audit.redis': 'defaults to revocations.redis, resolved after validation',
      'audit.prefix': 'defaults to revocations.prefix, resolved after validation',
      'authority.bootstrap.kubernetes.tokenFile': 'a default inside an optional section',
    },
  },
  {
    name: 'authority (docs/authority.md)',
    ...authorityKeys(),
    rows: [
      ...tableRows('docs/authority.md', '### Top level', ''),
      ...tableRows('docs/authority.md', '### `credentials.<name>`', 'credentials.<name>', 1, 3),
      ...tableRows('docs/authority.md', '### `policies[]`', 'policies[].'),
      ...tableRows('docs/authority.md', '## Connections', ''),
    ],
    defaultsExplained: {
      'kubernetes.apiServer': 'the in-cluster default is resolved by src/bin/authority.ts',
      'kubernetes.caFile': 'the in-cluster default is resolved by src/bin/authority.ts',
      'kubernetes.tokenFile': 'the in-cluster default is resolved by src/bin/authority.ts',
      'signing.issuer': 'derived from hostnames[0]',
    },
  },
  {
    name: 'sidecar, rotation keys (docs/rotation.md)',
    ...(() => ({ keys: keysOf(sidecarSchema), paths: allPaths(sidecarSchema) }))(),
    rows: tableRows('docs/rotation.md', '## Configuration', ''),
    partial: true,
  },
  {
    name: 'injector (docs/configuration.md)',
    ...(() => ({ keys: keysOf(injectorSchema), paths: allPaths(injectorSchema) }))(),
    rows: tableRows('docs/configuration.md', '## Injector configuration', ''),
    defaultsExplained: {
      'authority.timeout': "the sidecar's default applies",
    },
  },
];

/** Is `path` documented: a row of its own, or under a row whose type spells out a mapping (`{ cpu?, memory? }`, `map of …`)? */
const covered = (rows: Row[], path: string) =>
  rows.some((r) => r.keys.includes(path) || (/^(`?\{|map of)/.test(r.type) && r.keys.some((k) => path.startsWith(`${k}.`))));

describe('docs drift: config keys and defaults', () => {
  for (const ref of REFERENCES) {
    describe(ref.name, () => {
      if (!ref.partial) it('every key the schema accepts has a row', () => {
        // A catalog route of the injector is a sidecar route (documented there) plus agentEnv.
        const missing = ref.keys
          .map((k) => k.path)
          .filter((p) => !covered(ref.rows, p))
          .filter((p) => !(ref.name.startsWith('injector') && p.startsWith('routes.<name>.') && p !== 'routes.<name>.agentEnv'));
        expect(missing, `keys without a row: ${missing.join(', ')}`).toEqual([]);
        // The walk found the keys (it is not silently matching nothing).
        expect(ref.keys.length).toBeGreaterThan(10);
      });

      it('every row names a key the schema accepts', () => {
        const unknown = ref.rows.flatMap((r) => r.keys.filter((k) => !ref.paths.has(k)).map((k) => `${r.where}: ${k}`));
        expect(unknown, unknown.join('\n')).toEqual([]);
      });

      it("every row's default is the schema's", () => {
        const byPath = new Map(ref.keys.map((k) => [k.path, k]));
        const wrong = ref.rows.flatMap((r) => {
          // Several keys in one cell: the defaults are listed in order, or one for all.
          const cells = r.default.split(/,\s*(?=`)|\s+and\s+(?=`)|\s+\/\s+(?=`)/);
          return r.keys.flatMap((k, i) => {
            const key = byPath.get(k);
            if (!key || ref.defaultsExplained?.[k]) return [];
            const cell = cells.length === r.keys.length ? cells[i]! : r.default;
            const stated = /`/.test(cell);
            if (!key.default) return stated && !/^—/.test(cell.trim()) ? [`${r.where}: ${k}: the doc states default ${cell}, the schema has none`] : [];
            if (!sameDefault(cell, key.default.value)) return [`${r.where}: ${k}: the doc states default "${cell}", the schema's is ${JSON.stringify(key.default.value)}`];
            return [];
          });
        });
        expect(wrong, wrong.join('\n')).toEqual([]);
      });
    });
  }
});

describe('docs drift: the example error messages of docs/configuration.md', () => {
  it('the example file gives exactly the lines shown', () => {
    const text = read('docs/configuration.md');
    const section = text.slice(text.indexOf('## Example error messages'));
    const shown = /```\nleash: invalid configuration:\n((?: {2}.*\n)+)/.exec(section);
    const file = /The first is this file[\s\S]*?```yaml\n([\s\S]*?)```/.exec(section);
    expect(shown, 'the block of messages').not.toBeNull();
    expect(file, 'the file that gives them').not.toBeNull();
    let message = '';
    try {
      parseConfig(sidecarSchema, file![1]!, { OPENAI_API_KEY: 'x' }, 'example.yaml');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(`leash: ${message}\n`).toBe(`leash: invalid configuration:\n${shown![1]}`);
  });
});
