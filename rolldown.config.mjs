// The shipped command line, `dist/leash/cli.js`: tsc's output (dist/src) bundled with its
// production dependencies into a few ES modules (`npm run build` runs tsc, then this).
//
// Why a bundle: the serving process then resolves and loads ~40 files instead of ~270
// (leash's 140 and the dependencies' CommonJS files), so start-up never gets hot enough to
// run V8's optimising compiler on Node's module resolver; idle RSS drops by ~5 MB, most of
// it the compiler's own code pages in the node binary (bench/RESULTS.md, "seventh").
// dist/src stays as tsc wrote it: the library entry points (package.json "exports") and
// the tests that import modules use it; every test that runs the CLI as a process runs
// this bundle (test/helpers/spawn.ts CLI).
//
// Output is flat, one directory: cli.js finds ../../package.json, and config/isolated.ts
// spawns `./validate-child.js` beside itself, both relative to import.meta.url.
// manifest.json records which modules each chunk holds and what it imports, so
// test/integration/bundle.test.ts can check that the sidecar's serving path never loads
// zod or yaml (config validation runs in the validate-child process).
import { relative } from 'node:path';

const root = process.cwd();
const rel = (id) => (id ? relative(root, id).split('\\').join('/') : null);

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
  logLevel: 'warn',
  plugins: [manifest],
  output: {
    dir: 'dist/leash',
    format: 'esm',
    entryFileNames: '[name].js',
    chunkFileNames: '[name]-[hash].js',
    cleanDir: true,
  },
};
