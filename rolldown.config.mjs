// The shipped command line, `dist/leash/cli.js`: tsc's output (dist/src) bundled with its
// production dependencies into a few ES modules (`npm run build` runs tsc, then this).
//
// Why a bundle: the serving process then resolves and loads 8 files instead of ~270
// (leash's 140 and the dependencies' CommonJS files), so start-up never gets hot enough to
// run V8's optimising compiler on Node's module resolver; idle RSS drops by ~5 MB, most of
// it the compiler's own code pages in the node binary (bench/RESULTS.md, "seventh").
// dist/src stays as tsc wrote it: the library entry points (package.json "exports") and
// the tests that import modules use it; every test that runs the CLI as a process runs
// this bundle (test/helpers/spawn.ts CLI).
//
// Chunks: rolldown's default split gave the sidecar ~24 chunk files to load (a chunk per set
// of commands sharing modules), and from a long install path (/usr/local/lib/node_modules/
// leash/…) the resolver's per-import work was still enough to get V8 to optimise it
// (`--trace-opt`: getPathFromURLPosix, normalizeString) and page in TurboFan's ~3.3 MB.
// Three groups keep the serving process to a few files: `base` (what cli.ts imports, so
// `cli.js` itself stays small and never loads the sidecar; its test must follow cli.ts's
// imports: test/e2e/bundle.test.ts fails when it does not), `serving` (everything
// `leash sidecar` imports statically, dependencies included), `validate` (what only the
// config child needs: yaml, zod, the schemas). A module two groups want goes to the higher
// priority, so `serving` never holds yaml or zod (test/integration/config-isolated.test.ts
// checks what the serving process loads); the config child loads `serving` for the few
// modules it shares with it (~30 ms more start-up, bench/RESULTS.md "seventh").
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const groups = [
  { name: 'base', test: /dist[\\/]src[\\/](core[\\/](errors|tick-shape)|bin[\\/]args)\.js$/, priority: 3 },
  { name: 'serving', test: /dist[\\/]src[\\/](bin[\\/]sidecar|sidecar[\\/]sidecar)\.js$/, priority: 2 },
  { name: 'validate', test: /dist[\\/]src[\\/]config[\\/]validate-child\.js$/, priority: 1 },
];

// Output is flat, one directory: cli.js finds ../../package.json, and config/isolated.ts
// spawns `./validate-child.js` beside itself, both relative to import.meta.url.
// manifest.json records which modules each chunk holds and what it imports:
// test/integration/config-isolated.test.ts maps the files the sidecar loads to modules
// through it (no zod or yaml, at most 8 files), test/e2e/bundle.test.ts checks its contents.
const root = process.cwd();
const rel = (id) => (id ? relative(root, id).split('\\').join('/') : null);

/**
 * telemetry/prom-collectors.js loads prom-client's collectors with a require by computed
 * name, which a bundler cannot follow; the bundle gets prom-collectors.bundled.js, the same
 * function over static imports (that file says why dist/src keeps the require).
 * @type {import('rolldown').Plugin}
 */
const promCollectors = {
  name: 'leash-prom-collectors',
  resolveId(source, importer) {
    if (source === './prom-collectors.js' && importer && /dist[\\/]src[\\/]telemetry[\\/]default-metrics\.js$/.test(importer)) {
      return join(dirname(importer), 'prom-collectors.bundled.js');
    }
    return null;
  },
};

/** @type {import('rolldown').Plugin} */
const manifest = {
  name: 'leash-manifest',
  generateBundle(_options, bundle) {
    const chunks = Object.values(bundle)
      .filter((c) => c.type === 'chunk')
      .map((c) => ({
        file: c.fileName,
        entry: c.isEntry,
        facade: rel(c.facadeModuleId),
        imports: [...c.imports].sort(),
        dynamicImports: [...c.dynamicImports].sort(),
        modules: c.moduleIds.map(rel).sort(),
      }))
      .sort((a, b) => a.file.localeCompare(b.file));
    this.emitFile({ type: 'asset', fileName: 'manifest.json', source: `${JSON.stringify({ chunks }, null, 1)}\n` });
  },
};

/**
 * THIRD-PARTY-LICENSES.txt beside the bundle: every npm package the bundle holds code from,
 * with its version, declared license and the license text it ships (their licenses ask that
 * the notice travel with the code, and the image carries the bundle without node_modules).
 * test/e2e/bundle.test.ts checks it names every package in manifest.json.
 * @type {import('rolldown').Plugin}
 */
const thirdPartyLicenses = {
  name: 'leash-third-party-licenses',
  generateBundle(_options, bundle) {
    const roots = new Set();
    for (const c of Object.values(bundle)) {
      if (c.type !== 'chunk') continue;
      for (const id of c.moduleIds) {
        // The package is the last node_modules/<name> or node_modules/@scope/<name> in the path.
        const m = /^(.*[\\/]node_modules[\\/](?:@[^\\/]+[\\/])?[^\\/]+)[\\/](?!.*[\\/]node_modules[\\/])/.exec(id);
        if (m) roots.add(m[1]);
      }
    }
    const entries = [...roots].map((root) => {
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
      const declared = typeof pkg.license === 'string' ? pkg.license : pkg.license?.type ?? (pkg.licenses ?? []).map((l) => l.type ?? l).join(' OR ');
      const file = readdirSync(root).find((f) => /^(licen[cs]e|copying)(\.(md|txt|markdown))?$/i.test(f));
      const text = file ? readFileSync(join(root, file), 'utf8').trim() : `(${pkg.name} ships no license file; its package.json declares ${declared || 'no license'}.)`;
      return { name: pkg.name, version: pkg.version, declared, text };
    });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    const rule = '='.repeat(78);
    const body = entries.map((e) => `${rule}\n${e.name} ${e.version} (${e.declared || 'no license declared'})\n${rule}\n\n${e.text}\n`).join('\n');
    const head = `Third-party software bundled into dist/leash (leash's own license: LICENSE at the package root).\n${entries.length} packages: ${entries.map((e) => e.name).join(', ')}.\n\n`;
    this.emitFile({ type: 'asset', fileName: 'THIRD-PARTY-LICENSES.txt', source: head + body });
  },
};

export default {
  input: { cli: 'dist/src/cli.js', 'validate-child': 'dist/src/config/validate-child.js' },
  platform: 'node',
    plugins: [promCollectors, manifest, thirdPartyLicenses],
  output: {
    dir: 'dist/leash',
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: '[name]-[hash].js',
    codeSplitting: { groups },
    cleanDir: true,
  },
};
