/**
 * A validated config as plain data, to cross from the process that validated it (with zod
 * and yaml loaded) to the serving process, which loads neither (config/isolated.ts).
 * Structured clone keeps plain objects, arrays and primitives as they are; a URL cannot be
 * cloned, so each is sent as its href with its key path and parsed again on arrival. Any
 * other kind of object (a class instance, a Map, a function) is refused where it is found:
 * a schema change that produces one must be taught here, not lose its prototype silently.
 */

export type KeyPath = ReadonlyArray<string | number>;

/** The argument that makes config/validate-child.js validate a request (imported anywhere else, it does nothing). */
export const VALIDATE_ARG = '--leash-validate-sidecar-config';

export interface PlainConfig {
  value: unknown;
  /** Where URLs were; each is an href string in `value`. */
  urls: KeyPath[];
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

export function toPlain(config: unknown): PlainConfig {
  const urls: KeyPath[] = [];
  const walk = (v: unknown, path: Array<string | number>): unknown => {
    if (v === null || typeof v !== 'object') {
      if (typeof v === 'function' || typeof v === 'symbol') throw new Error(`config value at ${show(path)} is a ${typeof v}: it cannot leave the validating thread`);
      return v;
    }
    if (v instanceof URL) {
      urls.push(path);
      return v.href;
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, [...path, i]));
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      throw new Error(`config value at ${show(path)} is a ${(v as object).constructor?.name ?? 'non-plain object'}: teach config/plain.ts to send it`);
    }
    const out: Record<string, unknown> = {};
    for (const [k, item] of Object.entries(v)) out[k] = walk(item, [...path, k]);
    return out;
  };
  return { value: walk(config, []), urls };
}

/** The config as validated: URLs parsed again from their href, everything frozen. */
export function fromPlain<T>(plain: PlainConfig): T {
  const root = { value: plain.value };
  for (const path of plain.urls) {
    let parent: Record<string | number, unknown> = root;
    let key: string | number = 'value';
    for (const k of path) {
      parent = parent[key] as Record<string | number, unknown>;
      key = k;
    }
    parent[key] = new URL(parent[key] as string);
  }
  return deepFreeze(root.value) as T;
}

const show = (path: KeyPath) => (path.length ? path.join('.') : '(root)');
