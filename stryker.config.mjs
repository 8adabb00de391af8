// @ts-check
/**
 * Mutation testing (docs/testing.md): `npm run mutate`. Not part of CI — it reruns tests
 * for every mutant and takes long on a small machine. LEASH_MUTATE selects the scope:
 *   full  (default) every security-critical module below, with the tests that cover them;
 *   small the verifier's deny-set (src/verify/deny-set.ts), the policy
 *         (src/authority/policy) and the proxy passes (src/sidecar/proxy/passes.ts): pure
 *         or socket-level code whose tests take seconds; about fifteen minutes on one core.
 *   bodies the body scanners (body-override.ts), allow rules (rules.ts) and target parsing
 *         (target.ts), with their unit and security tests.
 * Tests come from vitest.stryker.config.ts (same variable): unit, security and the
 * integration tests of these modules; e2e tests (spawned built processes) are left out,
 * as they would test dist/, not the mutated source.
 */
/**
 * Whole files or globs, no line ranges: a range stays put while the code under it moves
 * (the small scope's `src/verify/revocations.ts:1-104` had come to leave out the end of the
 * deny-set, the line of one of issue 12's mutations among it). test/unit/mutation-scope.test.ts.
 *
 * The full scope also comes in parts (`part-*`), each a run that fits a session on this
 * machine: together they mutate every file of the full scope exactly once (same test), and
 * `scripts/mutate-parts.sh` runs them and records each (docs/testing.md).
 */
/** The proxy's connection and response side; the rest of src/sidecar/proxy decides requests. */
const PROXY_IO = ['server', 'response', 'scrub', 'timeouts', 'pool', 'respond', 'upgrade', 'inject', 'audit-path'].map((f) => `src/sidecar/proxy/${f}.ts`);
export const PARTS = {
  'part-core': ['src/authority/policy/**/*.ts', 'src/bus/**/*.ts', 'src/verify/**/*.ts'],
  'part-credentials': ['src/sidecar/credentials/**/*.ts'],
  'part-proxy-request': ['src/sidecar/proxy/**/*.ts', ...PROXY_IO.map((f) => `!${f}`)],
  'part-proxy-io': PROXY_IO,
};
export const SCOPES = {
  full: ['src/sidecar/proxy/**/*.ts', 'src/sidecar/credentials/**/*.ts', 'src/authority/policy/**/*.ts', 'src/bus/**/*.ts', 'src/verify/**/*.ts'],
  ...PARTS,
  small: ['src/verify/deny-set.ts', 'src/authority/policy/**/*.ts', 'src/sidecar/proxy/passes.ts'],
  // The sixth pass's allow-rule classes: method overrides in bodies, tunnel endpoints, normalising paths.
  bodies: ['src/sidecar/proxy/body-override.ts', 'src/config/rules.ts', 'src/sidecar/proxy/target.ts'],
};
const scope = process.env.LEASH_MUTATE ?? 'full';
if (!(scope in SCOPES)) throw new Error(`LEASH_MUTATE must be one of ${Object.keys(SCOPES).join(', ')}`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  plugins: ['@stryker-mutator/vitest-runner'],
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.stryker.config.ts' },
  coverageAnalysis: 'perTest',
  mutate: SCOPES[/** @type {keyof typeof SCOPES} */ (scope)],
  // The machine is shared: one test process at a time.
  concurrency: 1,
  // Module-level constants (static mutants) would need the whole test set per mutant.
  ignoreStatic: true,
  timeoutMS: 5_000,
  // The dry run takes about 4 min alone here; two parts started side by side doubled it
  // past Stryker's 5 min default and the second run stopped (2026-11-28).
  dryRunTimeoutMinutes: 20,
  timeoutFactor: 2,
  tempDirName: '.stryker-tmp',
  // TypeScript 7 (the native compiler) has no JavaScript API for Stryker's tsconfig
  // rewriting; vitest transpiles the sources itself, so nothing needs it. A file that does
  // not exist turns that step off.
  tsconfigFile: 'tsconfig.stryker-none.json',
  reporters: ['clear-text', 'progress', 'json', 'html'],
  jsonReporter: { fileName: `reports/mutation/${scope}.json` },
  htmlReporter: { fileName: `reports/mutation/${scope}.html` },
  thresholds: { high: 80, low: 60, break: null },
};
