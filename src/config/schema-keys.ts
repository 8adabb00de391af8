import type { z } from 'zod';

/**
 * The keys a schema accepts at a key path, read from the zod definitions, so an unknown
 * key can be answered with the closest known one ("did you mean …?") at any depth. Where a
 * union offers several mappings, the one the input chose is used: the one whose literal
 * (e.g. `kind: jwt`) matches, else the one sharing most keys with what was written.
 */
/** The parts of a zod definition leash reads (config tooling and the docs tests). */
export interface Def {
  type: string;
  in?: unknown;
  innerType?: unknown;
  getter?: () => unknown;
  shape?: Record<string, unknown>;
  valueType?: unknown;
  element?: unknown;
  options?: readonly unknown[];
  values?: readonly unknown[];
  defaultValue?: unknown;
}

export const defOf = (schema: unknown): Def | undefined => (schema as { _zod?: { def?: Def } } | undefined)?._zod?.def;

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch', 'nonoptional', 'success']);

export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[], input: unknown): string[] | undefined {
  return walk(schema, path, input, 0);
}

function walk(schema: unknown, path: readonly PropertyKey[], input: unknown, depth: number): string[] | undefined {
  if (depth > 64) return undefined;
  const d = defOf(schema);
  if (!d) return undefined;
  if (d.type === 'pipe') return walk(d.in, path, input, depth + 1);
  if (WRAPPERS.has(d.type)) return walk(d.innerType, path, input, depth + 1);
  if (d.type === 'lazy' && d.getter) return walk(d.getter(), path, input, depth + 1);
  if (d.type === 'union') return pickUnion(d.options ?? [], path, input, depth);
  const [head, ...rest] = path;
  const child = input !== null && typeof input === 'object' && head !== undefined ? (input as Record<PropertyKey, unknown>)[head] : undefined;
  if (d.type === 'object') {
    if (head === undefined) return Object.keys(d.shape ?? {});
    const next = d.shape?.[String(head)];
    return next === undefined ? undefined : walk(next, rest, child, depth + 1);
  }
  if (head === undefined) return undefined;
  if (d.type === 'record') return walk(d.valueType, rest, child, depth + 1);
  if (d.type === 'array') return walk(d.element, rest, child, depth + 1);
  return undefined;
}

function pickUnion(options: readonly unknown[], path: readonly PropertyKey[], input: unknown, depth: number): string[] | undefined {
  const target = lookup(input, path);
  const written = target !== null && typeof target === 'object' ? Object.keys(target) : [];
  let best: string[] | undefined;
  let bestScore = -1;
  for (const option of options) {
    const keys = walk(option, path, input, depth + 1);
    if (!keys) continue;
    const score = written.filter((k) => keys.includes(k)).length + 100 * literalMatches(option, path, input);
    if (score > bestScore) [best, bestScore] = [keys, score];
  }
  return best;
}

/** How many literal-valued keys of the mapping at `path` the input matches (a discriminator). */
function literalMatches(schema: unknown, path: readonly PropertyKey[], input: unknown): number {
  let d = defOf(schema);
  while (d && (d.type === 'pipe' || WRAPPERS.has(d.type))) d = defOf(d.type === 'pipe' ? d.in : d.innerType);
  if (!d) return 0;
  if (path.length > 0) {
    const [head, ...rest] = path;
    const child = input !== null && typeof input === 'object' ? (input as Record<PropertyKey, unknown>)[head!] : undefined;
    const next = d.type === 'object' ? d.shape?.[String(head)] : d.type === 'record' ? d.valueType : d.type === 'array' ? d.element : undefined;
    return next === undefined ? 0 : literalMatches(next, rest, child);
  }
  if (d.type !== 'object' || input === null || typeof input !== 'object') return 0;
  let n = 0;
  for (const [key, field] of Object.entries(d.shape ?? {})) {
    const fd = defOf(field);
    if (fd?.type === 'literal' && fd.values?.includes((input as Record<string, unknown>)[key])) n++;
  }
  return n;
}

function lookup(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur = input;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}
