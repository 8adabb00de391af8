import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * What the mutation run (stryker.config.mjs, docs/testing.md) mutates. Issue 12 scoped it to
 * five directories; a scope entry naming a file that moved, or a line range the code has
 * moved out of, mutates less than it says without any error: Stryker just finds fewer
 * mutants. The small scope's `src/verify/revocations.ts:1-104` had come to leave out the
 * end of the deny-set (its pruning and `later()`, where issue 12's fifth mutation is).
 */
const ROOT = process.cwd();
const { SCOPES, PARTS } = (await import(pathToFileURL(join(ROOT, 'stryker.config.mjs')).href)) as { SCOPES: Record<string, string[]>; PARTS: Record<string, string[]> };

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The files an entry names: `dir/**\/*.ts` or one file (`!` entries name what is taken out). */
function filesOf(entry: string): string[] {
  if (entry.startsWith('!')) return filesOf(entry.slice(1));
  const glob = /^(.+)\/\*\*\/\*\.ts$/.exec(entry);
  if (glob) return existsSync(join(ROOT, glob[1]!)) ? tsFiles(join(ROOT, glob[1]!)) : [];
  return existsSync(join(ROOT, entry)) && statSync(join(ROOT, entry)).isFile() ? [join(ROOT, entry)] : [];
}

describe('mutation-testing scopes', () => {
  it('the default (full) scope is exactly issue 12’s five directories', () => {
    expect(SCOPES.full).toEqual(['src/sidecar/proxy/**/*.ts', 'src/sidecar/credentials/**/*.ts', 'src/authority/policy/**/*.ts', 'src/bus/**/*.ts', 'src/verify/**/*.ts']);
  });

  it('every entry names existing sources, as whole files or globs (no line range to go stale)', () => {
    for (const [scope, entries] of Object.entries(SCOPES)) {
      for (const entry of entries) {
        expect(entry, `${scope}: ${entry}`).not.toMatch(/:\d+(-\d+)?$/);
        expect(filesOf(entry).length, `${scope}: ${entry} matches no file`).toBeGreaterThan(0);
      }
    }
  });

  it('the parts together mutate every file of the full scope exactly once', () => {
    /** A scope's files as Stryker takes them: the entries in order, `!` ones taking out. */
    const scopeFiles = (entries: string[]): string[] => {
      const out = new Set<string>();
      for (const e of entries) for (const f of filesOf(e)) e.startsWith('!') ? out.delete(f) : out.add(f);
      return [...out].sort();
    };
    const full = scopeFiles(SCOPES.full!);
    const seen = new Map<string, string>();
    for (const [part, entries] of Object.entries(PARTS)) {
      expect(SCOPES[part], part).toEqual(entries);
      for (const f of scopeFiles(entries)) {
        expect(seen.get(f), `${f} is in ${seen.get(f)} and ${part}`).toBeUndefined();
        seen.set(f, part);
      }
    }
    expect([...seen.keys()].sort()).toEqual(full);
    expect(full.length).toBeGreaterThan(30);
  });

  it('the small scope mutates the whole verifier deny-set', () => {
    const file = tsFiles(join(ROOT, 'src/verify')).find((f) => /^export class DenySet\b/m.test(readFileSync(f, 'utf8')))!;
    expect(file).toBeDefined();
    const small = SCOPES.small!.flatMap(filesOf);
    expect(small).toContain(file);
    // The whole of it: the cutoff rule (issue 12's fifth mutation) is in that file.
    expect(readFileSync(file, 'utf8')).toMatch(/^function later\(/m);
  });
});
