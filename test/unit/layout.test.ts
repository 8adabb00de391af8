import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Module layout (DESIGN §9, docs/DESIGN.md): what lives in one place stays there.
 * - Redis key names, revocation scopes and JWT claim names are spelled only in
 *   src/core/protocol.ts; everything else builds them from there.
 * - src/pki (X.509, CSRs, the CA) depends on nothing of authority/ or sidecar/.
 * - The sidecar loads src/pki (and node-forge with it) only by dynamic import.
 */
const SRC = join(process.cwd(), 'src');
const PROTOCOL = 'core/protocol.ts';

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...tsFiles(join(dir, e.name)));
    else if (e.name.endsWith('.ts')) out.push(join(dir, e.name));
  }
  return out;
}

/** The source without whole-line comments (JSDoc and `//` lines may name keys in prose). */
const code = (file: string): string =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => !/^\s*(\*|\/\*|\/\/)/.test(l))
    .join('\n');

/** Spellings that belong in core/protocol.ts only. Each must match there (else the pattern is dead). */
const ONLY_IN_PROTOCOL: Record<string, RegExp> = {
  // 'leash:' itself, or a key with the default prefix written out ('leash:revocations', `leash:audit`…)
  'the default key prefix': /['"`]leash:(['"`$]|revocations|audit|leases?:|join:|identity:|revoked:)/,
  // `${prefix}revocations`, `${p}audit`, prefix + 'revocations'
  'a stream or channel name after a prefix': /\$\{[^}`]*\}(revocations|audit)\b|\+\s*['"](revocations|audit)['"]/,
  // `${p}lease:${id}`, `${p}leases:all`, `${p}revoked:instance:${id}`…
  'a lease store key after a prefix': /\$\{[^}`]*\}(lease|leases|join|identity|revoked):/,
  'the epoch key suffix': /:epoch['"`]/,
  'a leash JWT claim name': /\bleash_(cred|iat_ms)\b/,
  // three or more scope names in a union or a list: the scopes defined again
  'the revocation scopes': /'(lease|instance|credential|all)'(\s*[|,]\s*'(lease|instance|credential|all)'){2,}/,
};

describe('one home for the protocol (src/core/protocol.ts)', () => {
  const files = tsFiles(SRC);
  const sources = new Map(files.map((f) => [relative(SRC, f), code(f)]));

  it('finds the sources', () => {
    expect(sources.size).toBeGreaterThan(50);
    expect(sources.has(PROTOCOL)).toBe(true);
  });

  for (const [what, pattern] of Object.entries(ONLY_IN_PROTOCOL)) {
    it(`${what} is spelled only in ${PROTOCOL}`, () => {
      expect(pattern.test(sources.get(PROTOCOL)!), `the pattern no longer matches ${PROTOCOL}`).toBe(true);
      const elsewhere = [...sources].filter(([name, text]) => name !== PROTOCOL && pattern.test(text)).map(([name, text]) => `${name}: ${text.match(pattern)![0]}`);
      expect(elsewhere).toEqual([]);
    });
  }
});

/** Static (runtime) imports of a file: `import type` / `export type` are erased and do not count; `import(…)` is dynamic. */
function staticImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s+(?!type\b)(?:[^;'"]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  return out;
}

function dynamicImports(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!);
}

const resolveLocal = (from: string, spec: string): string | undefined => (spec.startsWith('.') ? resolve(dirname(from), spec.replace(/\.js$/, '.ts')) : undefined);

/** Every src file reached from `entry` by static imports. */
function staticGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [join(SRC, entry)];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const spec of staticImports(f)) {
      const local = resolveLocal(f, spec);
      if (local) todo.push(local);
    }
  }
  return new Set([...seen].map((f) => relative(SRC, f)));
}

describe('src/pki', () => {
  it('imports only itself, core/, node: modules and packages (never authority/ or sidecar/)', () => {
    const pki = tsFiles(join(SRC, 'pki'));
    expect(pki.map((f) => relative(SRC, f)).sort()).toEqual(['pki/ca.ts', 'pki/csr.ts', 'pki/errors.ts', 'pki/issue.ts', 'pki/spiffe.ts', 'pki/verify.ts', 'pki/x509.ts']);
    const bad: string[] = [];
    for (const f of pki) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\bfrom\s+['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]/g)) {
        const spec = (m[1] ?? m[2])!;
        const local = resolveLocal(f, spec);
        if (local && !/^(pki|core)\//.test(relative(SRC, local))) bad.push(`${relative(SRC, f)} → ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the sidecar does not load it (nor node-forge) until it needs a CSR: only a dynamic import reaches it', () => {
    // Sanity: the walk does find pki where it is imported statically.
    expect([...staticGraph('authority/assemble.ts')]).toContain('pki/x509.ts');
    // bin/sidecar.ts imports the serving code (sidecar/assemble.ts) at every start, once the
    // config's worker has exited: part of what a sidecar loads, though not a static import.
    const graph = new Set([...staticGraph('bin/sidecar.ts'), ...staticGraph('sidecar/assemble.ts')]);
    expect(graph).toContain('sidecar/sidecar.ts');
    expect([...graph].filter((f) => f.startsWith('pki/'))).toEqual([]);
    // …and some module of the sidecar does load it on demand (the identity manager, for its CSR).
    const lazy = [...graph].flatMap((f) => dynamicImports(join(SRC, f)).map((spec) => relative(SRC, resolveLocal(join(SRC, f), spec) ?? spec)));
    expect(lazy.filter((f) => f.endsWith('.ts') && staticGraph(f).has('pki/x509.ts'))).not.toEqual([]);
  });
});
