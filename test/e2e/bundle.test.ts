import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, CLI_MISSING, runLeash, spawnLeash, type Spawned } from '../helpers/spawn.js';

/**
 * The shipped command line is a bundle (rolldown.config.mjs): dist/leash/ holds leash and
 * its production dependencies. Copied alone into a directory with no node_modules on the
 * way up (so nothing can be found there), it must still run: `--version`, `check`, and
 * `leash dev` serving its demo route (authority, mTLS bootstrap, a leased JWT, the proxy).
 * A dependency the bundle left out would be loaded from node_modules at run time: a second
 * copy beside the bundled one, or a failure in an image without node_modules.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
let dir: string;
let cli: string;
let dev: Spawned | undefined;

/** Every node_modules directory Node would search from `from` upwards. */
function nodeModulesAbove(from: string): string[] {
  const found: string[] = [];
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) found.push(join(d, 'node_modules'));
    if (d === parse(d).root) return found;
  }
}

beforeAll(() => {
  expect(existsSync(CLI), CLI_MISSING).toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'leash-bundle-'));
  cpSync(dirname(CLI), join(dir, 'dist', 'leash'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  cli = join(dir, 'dist', 'leash', 'cli.js');
});

afterAll(async () => {
  if (dev && dev.child.exitCode === null) {
    dev.child.kill('SIGKILL');
    await dev.exit;
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('the bundled CLI, alone in a directory without node_modules', () => {
  const run = (args: string[], env: Record<string, string> = {}) => runLeash(args, env, { cli, cwd: dir });

  it('has no node_modules to fall back on', () => {
    expect(nodeModulesAbove(dirname(cli))).toEqual([]);
  });

  it("holds prom-client's collectors itself (prom-collectors.bundled.js in place of the require)", () => {
    const { chunks } = JSON.parse(readFileSync(join(dirname(cli), 'manifest.json'), 'utf8')) as { chunks: Array<{ modules: string[] }> };
    const modules = chunks.flatMap((c) => c.modules);
    expect(modules).toContain('dist/src/telemetry/prom-collectors.bundled.js');
    expect(modules).not.toContain('dist/src/telemetry/prom-collectors.js');
    expect(modules).toContain('node_modules/prom-client/lib/metrics/processCpuTotal.js');
  });

  it("carries the license text of every npm package it holds code from (THIRD-PARTY-LICENSES.txt)", () => {
    const { chunks } = JSON.parse(readFileSync(join(dirname(cli), 'manifest.json'), 'utf8')) as { chunks: Array<{ modules: string[] }> };
    // The package of a module is its last node_modules/<name> (or @scope/<name>).
    const roots = new Set(chunks.flatMap((c) => c.modules).flatMap((m) => /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(m)?.[1] ?? []));
    expect(roots.size).toBeGreaterThanOrEqual(10);
    const notices = readFileSync(join(dirname(cli), 'THIRD-PARTY-LICENSES.txt'), 'utf8');
    const sections = notices.split(/^={78}$/m);
    for (const root of roots) {
      const dep = JSON.parse(readFileSync(join(ROOT, root, 'package.json'), 'utf8')) as { name: string; version: string };
      // A header line `<name> <version> (<license>)`, then that package's own license file.
      const i = sections.findIndex((sec) => sec.trim().startsWith(`${dep.name} ${dep.version} (`));
      expect(i, `${dep.name} ${dep.version} in THIRD-PARTY-LICENSES.txt`).toBeGreaterThan(0);
      const file = readdirSync(join(ROOT, root)).find((f) => /^(licen[cs]e|copying)(\.(md|txt|markdown))?$/i.test(f));
      expect(file, `${dep.name} ships a license file`).toBeDefined();
      expect(sections[i + 1]!.trim()).toBe(readFileSync(join(ROOT, root, file!), 'utf8').trim());
    }
    // No package listed that the bundle does not hold.
    expect(notices.match(/^={78}$/gm)!.length).toBe(2 * roots.size);
  });

  it("loads, to start, only what src/cli.ts imports: the `base` group follows cli.ts (rolldown.config.mjs)", () => {
    const { chunks } = JSON.parse(readFileSync(join(dirname(cli), 'manifest.json'), 'utf8')) as { chunks: Array<{ file: string; imports: string[]; modules: string[] }> };
    const byFile = new Map(chunks.map((c) => [c.file, c]));
    // The chunks cli.js loads statically, and the modules they hold.
    const loaded = new Set<string>();
    const visit = (file: string) => {
      if (loaded.has(file) || !byFile.has(file)) return; // node: built-ins are not chunks
      loaded.add(file);
      for (const i of byFile.get(file)!.imports) visit(i);
    };
    visit('cli.js');
    const bundled = [...loaded].flatMap((f) => byFile.get(f)!.modules).sort();
    // What dist/src/cli.js imports statically, followed through dist/src.
    const wanted = new Set<string>();
    const follow = (rel: string) => {
      if (wanted.has(rel)) return;
      wanted.add(rel);
      const text = readFileSync(join(ROOT, rel), 'utf8');
      for (const m of text.matchAll(/^import\s[^;]*?from\s+'(\.{1,2}\/[^']+)';/gm)) follow(join(dirname(rel), m[1]!).split('\\').join('/'));
    };
    follow('dist/src/cli.js');
    // A drift (an import added to cli.ts that the group's test does not name) puts that
    // module in another chunk, and cli.js would load that chunk, and whatever it holds, at every start.
    expect(bundled).toEqual([...wanted].sort());
    expect(loaded.size).toBe(2);
  });

  it('answers --version', () => {
    const r = run(['--version']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('checks a config in its child process (the bundled validate-child.js: yaml and zod)', () => {
    const good = join(dir, 'sidecar.yaml');
    writeFileSync(good, ['routes:', '  api:', '    upstream: https://api.example.com', '    credential: { env: API_KEY }', '    inject: { header: authorization, format: "Bearer {{credential}}" }', '    allow: ["GET /v1/models"]', ''].join('\n'));
    const ok = run(['check', '--config', good], { API_KEY: 'bundle-test-dummy' });
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain('valid');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'routes:\n  api:\n    upstream: api.example.com\n');
    const no = run(['check', '--config', bad]);
    expect(no.status).toBe(1);
    expect(no.stderr).toContain('routes.api.upstream');
  });

  it('runs `leash dev`: bootstrap, a leased credential, and the proxy answering the demo route', async () => {
    dev = spawnLeash(['dev'], { LEASH_LISTEN: '127.0.0.1:0', LEASH_ADMIN: '127.0.0.1:0', LEASH_DEMO_TTL: '30s' }, { cli, cwd: dir });
    const started = await dev.waitFor((l) => l.msg === 'leash sidecar started', 20_000);
    const res = await fetch(`http://${String(started.listen)}/demo/whoami`);
    expect(res.status, await res.clone().text()).toBe(200);
    // The demo upstream verified the leased JWT and says whom it was issued to.
    expect(JSON.stringify(await res.json())).toMatch(/spiffe:\/\//);
    dev.child.kill('SIGTERM');
    expect(await dev.exit).toBe(0);
  }, 30_000);
});
