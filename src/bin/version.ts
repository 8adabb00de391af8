import { readFileSync } from 'node:fs';

/**
 * The version in leash's package.json (for leash_build_info), read by the entry points.
 * Compiled this file is dist/src/bin/version.js, run from source src/bin/version.ts: the
 * package.json is two or three levels up; the first that names the package is it.
 */
export function packageVersion(): string {
  for (const rel of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'leash' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not there: try the next level
    }
  }
  return 'unknown';
}
