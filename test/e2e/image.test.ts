import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { basename, dirname, join, parse, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The Dockerfile's steps, without a Docker engine (none on these machines): build, `npm pack`,
 * unpack the tarball, then copy out of it exactly what the runtime stage's `COPY --from=build`
 * lines copy (the bundle, package.json, the examples: no node_modules), and run that the way
 * the image's ENTRYPOINT/CMD do: `--version`, `leash check` on every shipped example and on the
 * image's default config, every bundle file imported with no node_modules to fall back on, and
 * the default sidecar started and probed. The published package itself (dist/src, the library
 * entry points) is checked too, installed with production dependencies only. The Dockerfile
 * and .dockerignore are parsed, so a change there that breaks the image (a user name instead
 * of a numeric uid, a config path CMD does not name, a COPY source the build context
 * excludes) fails this test.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: { leash: string }; dependencies: Record<string, string>; devDependencies: Record<string, string> };

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Array<{ op: string; args: string }> {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), args: m[2]! };
    });
}
const steps = instructions(dockerfile);
/** The instructions of the last stage (the image that ships). */
const runtime = steps.slice(steps.map((s) => s.op).lastIndexOf('FROM'));
const only = (op: string) => runtime.filter((s) => s.op === op);
const execForm = (op: string): string[] => JSON.parse(only(op).at(-1)!.args) as string[];

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeout ?? 60_000 });
  if (r.error) throw r.error;
  return r;
}
/** A .dockerignore pattern as a regular expression (`*` within a path segment, `**` across). */
const glob = (pattern: string) =>
  new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\0').replace(/\*/g, '[^/]*').replace(/\0/g, '.*')}$`);
const ok = (r: SpawnSyncReturns<string>, what: string) => {
  if (r.status !== 0) throw new Error(`${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
};

let work: string;
/** The unpacked npm package (the build stage's /pkg), with its production dependencies installed. */
let pkgDir: string;
/** The clean directory standing for the image's /app: what the runtime stage copies from /pkg. */
let app: string;
/** The ENTRYPOINT with /app mapped to `app`: [node, …flags, <app>/dist/leash/cli.js]. */
let entry: string[];
/** Dummy values for every variable the shipped examples read (none is a real secret). */
const dummyEnv: NodeJS.ProcessEnv = {
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? tmpdir(),
  // Dummy values: `leash check` only needs the variables set.
  OPENAI_API_KEY: 'sk-image-test-dummy',
  ANTHROPIC_API_KEY: 'sk-ant-image-test-dummy',
  LEASH_ADMIN_TOKEN: 'image-test-admin-token',
  LEASH_JOIN_TOKEN: 'image-test-join-token',
  POD_NAME: 'image-test-pod',
};

/** The build stage's instructions (between the first and the second FROM). */
const buildStage = (() => {
  const froms = steps.flatMap((s, i) => (s.op === 'FROM' ? [i] : []));
  return steps.slice(froms[0]! + 1, froms[1]);
})();

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'leash-image-'));
  // Build stage, in a clean directory holding only what its COPY instructions copy (so a
  // file the build needs but the Dockerfile forgets fails here), with the repository's
  // node_modules standing in for its `npm ci`. The repository's own dist/ is not touched:
  // other test files run the CLI from it meanwhile.
  const build = join(work, 'build');
  mkdirSync(build);
  for (const copy of buildStage.filter((s) => s.op === 'COPY')) {
    const parts = copy.args.split(/\s+/);
    const dest = parts.at(-1)!;
    for (const src of parts.slice(0, -1)) {
      // Every build-stage COPY keeps the path: `COPY a b ./` or `COPY src ./src`.
      expect([`./`, `./${src}`], `COPY ${copy.args}`).toContain(dest);
      cpSync(join(ROOT, src), join(build, src), { recursive: true });
    }
  }
  symlinkSync(join(ROOT, 'node_modules'), join(build, 'node_modules'), 'dir');
  // The build stage's `npm run build`: tsc, then the bundle (rolldown.config.mjs).
  expect(buildStage.some((s) => s.op === 'RUN' && s.args.startsWith('npm run build'))).toBe(true);
  ok(run('npm', ['run', 'build'], { cwd: build, timeout: 120_000 }), 'npm run build');
  const packed = ok(run('npm', ['pack', '--json', '--pack-destination', work], { cwd: build, timeout: 60_000 }), 'npm pack');
  const tarball = join(work, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename);
  pkgDir = join(work, 'pkg');
  mkdirSync(pkgDir);
  ok(run('tar', ['-xzf', tarball, '-C', pkgDir, '--strip-components=1']), 'tar');
  // Runtime stage: its `COPY --from=build /pkg/… dest` lines, relative to WORKDIR /app. As
  // Docker does: a file lands in dest (or dest/<name> when dest is a directory), a
  // directory's contents land in dest.
  app = join(work, 'app');
  mkdirSync(app);
  const fromBuild = only('COPY').filter((s) => s.args.startsWith('--from=build '));
  expect(fromBuild.length).toBeGreaterThan(0);
  for (const copy of fromBuild) {
    const parts = copy.args.split(/\s+/).slice(1);
    const dest = join(app, parts.at(-1)!);
    for (const src of parts.slice(0, -1)) {
      expect(src, `COPY ${copy.args}: from the package`).toMatch(/^\/pkg\//);
      const from = join(pkgDir, src.slice('/pkg/'.length));
      if (statSync(from).isDirectory()) cpSync(from, dest, { recursive: true });
      else cpSync(from, parts.at(-1)!.endsWith('/') || parts.length > 2 ? join(dest, basename(from)) : dest);
    }
  }
  // The published package, as `npm install leash` gives it: production dependencies only.
  cpSync(join(ROOT, 'package-lock.json'), join(pkgDir, 'package-lock.json'));
  ok(run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: pkgDir, timeout: 120_000 }), 'npm ci --omit=dev');
  entry = execForm('ENTRYPOINT').map((a) => (a.startsWith('/app/') ? join(app, a.slice('/app/'.length)) : a === 'node' ? process.execPath : a));
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const leash = (args: string[], env: NodeJS.ProcessEnv = dummyEnv) => run(entry[0]!, [...entry.slice(1), ...args], { cwd: app, env, timeout: 20_000 });

describe('the Dockerfile', () => {
  it('runs as a numeric non-root uid:gid, so the kubelet can enforce runAsNonRoot', () => {
    const user = only('USER').at(-1)?.args;
    expect(user, 'the runtime stage sets USER').toBeDefined();
    expect(user).toMatch(/^\d+(:\d+)?$/);
    const [uid, gid] = user!.split(':').map(Number);
    expect(uid).not.toBe(0);
    if (gid !== undefined) expect(gid).not.toBe(0);
  });

  it('pins its base image to an exact release, and labels the image', () => {
    const arg = /NODE_IMAGE=(\S+)/.exec(steps.find((s) => s.op === 'ARG' && s.args.startsWith('NODE_IMAGE='))?.args ?? '')?.[1];
    expect(arg).toMatch(/^node:\d+\.\d+\.\d+-[a-z]+-slim(@sha256:[0-9a-f]{64})?$/);
    // Every stage builds FROM that argument, never a floating tag.
    for (const from of steps.filter((s) => s.op === 'FROM')) expect(from.args).toMatch(/^\$\{NODE_IMAGE\}/);
    const labels = only('LABEL').map((s) => s.args).join(' ');
    for (const key of ['title', 'description', 'source', 'licenses', 'version']) expect(labels).toContain(`org.opencontainers.image.${key}=`);
    expect(only('ARG').map((s) => s.args)).toContain(`VERSION=${pkg.version}`);
    expect(labels).toContain(`org.opencontainers.image.licenses="${(pkg as { license?: string }).license}"`);
  });

  it('copies nothing the .dockerignore allowlist leaves out of the build context', () => {
    const allowed = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    const sources = steps
      .filter((s) => s.op === 'COPY' && !s.args.startsWith('--from'))
      .flatMap((s) => s.args.split(/\s+/).slice(0, -1));
    expect(sources.length).toBeGreaterThan(0);
    for (const src of sources) {
      const hit = allowed.some((a) => glob(a).test(src) || src.startsWith(`${a}/`) || a.startsWith(`${src}/`));
      expect(hit, `COPY ${src} is excluded by .dockerignore`).toBe(true);
      expect(existsSync(join(ROOT, src)), `COPY ${src} exists`).toBe(true);
    }
  });
});

/** Every .js file under `dir`. */
function jsFiles(dir: string): string[] {
  const files: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) files.push(...jsFiles(join(dir, e.name)));
    else if (e.name.endsWith('.js')) files.push(join(dir, e.name));
  }
  return files;
}

/** Imports every file from a script file (cli.js runs unless argv[1] names another file, so not with -e): importing it starts nothing. */
function importAll(files: string[], cwd: string, tag: string) {
  const script = join(work, `import-${tag}.mjs`);
  writeFileSync(script, `for (const f of ${JSON.stringify(files)}) await import(f);\n`);
  return run(process.execPath, [script], { cwd, env: dummyEnv, timeout: 30_000 });
}

describe('the published package (npm pack, npm ci --omit=dev)', () => {
  it('imports every compiled module with production dependencies only', () => {
    const files = jsFiles(join(pkgDir, 'dist', 'src'));
    expect(files.length).toBeGreaterThan(50);
    ok(importAll(files, pkgDir, 'package'), 'import every module of dist/src');
  }, 40_000);
});

describe('the image (the bundle copied out of the package, no node_modules)', () => {
  it('holds no node_modules: the bundle is all it runs', () => {
    const above: string[] = [];
    for (let d = app; ; d = dirname(d)) {
      if (existsSync(join(d, 'node_modules'))) above.push(join(d, 'node_modules'));
      if (d === parse(d).root) break;
    }
    expect(above).toEqual([]);
  });

  it('ships the bundle, its licenses and the examples, not the sources, tests, library or build tree', () => {
    const top = readdirSync(app).sort();
    expect(top).toEqual(['CHANGELOG.md', 'LICENSE', 'README.md', 'dist', 'examples', 'package.json']);
    expect(readdirSync(join(app, 'dist'))).toEqual(['leash']);
    // The ENTRYPOINT runs the bundle (rolldown.config.mjs), and the package's bin is the same file.
    expect(entry.at(-1)).toBe(join(app, 'dist', 'leash', 'cli.js'));
    expect(existsSync(entry.at(-1)!)).toBe(true);
    expect(existsSync(join(app, 'dist', 'leash', 'validate-child.js'))).toBe(true);
    expect(join(app, pkg.bin.leash)).toBe(entry.at(-1));
    // The bundled dependencies' licenses travel with them (test/e2e/bundle.test.ts checks the contents).
    expect(readFileSync(join(app, 'dist', 'leash', 'THIRD-PARTY-LICENSES.txt'), 'utf8')).toMatch(/^http-proxy \d+\.\d+\.\d+ \(MIT\)$/m);
  });

  it('answers --version with the package version', () => {
    const r = ok(leash(['--version']), '--version');
    expect(r.stdout).toContain(pkg.version);
  });

  it('imports every file of the bundle', () => {
    const files = jsFiles(join(app, 'dist', 'leash'));
    expect(files.length).toBeGreaterThan(5);
    ok(importAll(files, app, 'image'), 'import every bundle file');
  }, 40_000);

  it('passes leash check on every shipped example', () => {
    const examples = readdirSync(join(app, 'examples')).filter((f) => f.endsWith('.yaml'));
    // Every example of the repository ships, and the image's default config is one of them.
    expect(examples.sort()).toEqual(readdirSync(join(ROOT, 'examples')).filter((f) => f.endsWith('.yaml')).sort());
    expect(examples.length).toBeGreaterThanOrEqual(6);
    for (const file of examples) {
      const r = leash(['check', '--config', join(app, 'examples', file)]);
      expect(r.status, `leash check ${file}:\n${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(`config ${join(app, 'examples', file)}: valid`);
    }
  }, 60_000);

  it("has a default config (CMD) that is shipped, valid, and puts admin where the kubelet's probes reach it", () => {
    const cmd = execForm('CMD');
    const configPath = cmd[cmd.indexOf('--config') + 1]!;
    expect(cmd[0]).toBe('sidecar');
    const copy = only('COPY').find((s) => !s.args.startsWith('--from') && s.args.split(/\s+/).at(-1) === configPath);
    expect(copy, `a COPY puts ${configPath} in the image`).toBeDefined();
    const source = copy!.args.split(/\s+/)[0]!;
    const shipped = join(app, source);
    expect(existsSync(shipped), `${source} is in the package`).toBe(true);
    // Without LEASH_ADMIN / LEASH_LISTEN: the image's own defaults.
    const r = ok(leash(['check', '--config', shipped]), 'check default config');
    expect(r.stdout).toMatch(/^listen 127\.0\.0\.1:8080\s+admin 0\.0\.0\.0:9090/m);
    expect(relative(app, shipped)).toBe('examples/sidecar-image.yaml');
  });

  it('starts the default sidecar, whose /readyz answers on a non-loopback address', async () => {
    const shipped = join(app, only('COPY').find((s) => s.args.endsWith('/etc/leash/sidecar.yaml'))!.args.split(/\s+/)[0]!);
    const cmd = execForm('CMD').map((a) => (a === '/etc/leash/sidecar.yaml' ? shipped : a));
    // Free ports instead of 8080/9090 (shared machine); the host stays the default's 0.0.0.0.
    const child = spawn(entry[0]!, [...entry.slice(1), ...cmd], {
      cwd: app,
      env: { ...dummyEnv, LEASH_LISTEN: '127.0.0.1:0', LEASH_ADMIN: '0.0.0.0:0', ANTHROPIC_API_KEY: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
        let buf = '';
        let err = '';
        const timer = setTimeout(() => reject(new Error(`no start line:\n${buf}\n${err}`)), 15_000);
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          for (const line of buf.split('\n')) {
            try {
              const j = JSON.parse(line) as Record<string, unknown>;
              if (j.msg === 'leash sidecar started') {
                clearTimeout(timer);
                resolve(j);
              }
            } catch {
              // a partial line
            }
          }
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}:\n${buf}\n${err}`)));
      });
      const port = Number(String(started.admin).split(':').pop());
      // A pod IP stands in for the kubelet's view; loopback only where the machine has none.
      const podIp = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address ?? '127.0.0.1';
      const probe = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        get({ host: podIp, port, path: '/readyz', timeout: 5_000 }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        }).on('error', reject);
      });
      // OPENAI_API_KEY set, ANTHROPIC_API_KEY empty: both routes are optional, so ready.
      expect(probe.status, probe.body).toBe(200);
      expect(probe.body).not.toContain('sk-image-test-dummy');
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);
});
