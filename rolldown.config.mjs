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
// imports), `serving` (everything
// `leash sidecar` imports statically, dependencies included), `validate` (what only the
// config child needs: yaml, zod, the schemas). A module two groups want goes to the higher
// priority, so `serving` never holds yaml or zod (test/integration/config-isolated.test.ts
// checks what the serving process loads); the config child loads `serving` for the few
// modules it shares with it (~30 ms more start-up, bench/RESULTS.md "seventh").
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

export default {
  input: { cli: 'dist/src/cli.js', 'validate-child': 'dist/src/config/validate-child.js' },
  platform: 'node',
    plugins: [promCollectors, manifest],
  output: {
    dir: 'dist/leash',
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: '[name]-[hash].js',
    codeSplitting: { groups },
    cleanDir: true,
  },
};
