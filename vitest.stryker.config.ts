import { defineConfig } from 'vitest/config';

/**
 * The tests Stryker runs (stryker.config.mjs): those that exercise the mutated modules,
 * without e2e (they spawn dist/, which a mutant does not change). LEASH_MUTATE=small
 * narrows them to the small scope's modules.
 */
const SMALL = [
  'test/unit/deny-set.test.ts',
  'test/unit/soak-deny-set.test.ts',
  'test/unit/policy.test.ts',
  'test/unit/policy-compile.test.ts',
  'test/unit/passes-margin.test.ts',
  'test/unit/passes.test.ts',
  'test/unit/headers.test.ts',
  'test/unit/target.test.ts',
  'test/integration/smoke.test.ts',
  'test/integration/websocket-refusal.test.ts',
  'test/security/hostile-paths.test.ts',
  // The passes added since the first measurement (header-line count, framing, browser
  // guard, Host routing, body phase, revocation gate) are decided by these.
  'test/security/header-count.test.ts',
  'test/security/framing-matrix.test.ts',
  'test/security/upgrade-framing.test.ts',
  'test/security/browser-requests.test.ts',
  'test/integration/host-resolver.test.ts',
  'test/integration/request-body-phase.test.ts',
  'test/integration/revocations-fail-closed.test.ts',
];
const BODIES = [
  'test/unit/body-override.test.ts',
  'test/unit/rules.test.ts',
  'test/unit/rules-tunnels.test.ts',
  'test/unit/target.test.ts',
  'test/unit/target-fast-path.test.ts',
  'test/unit/target-normalisation.test.ts',
  'test/unit/scopes.test.ts',
  'test/security/override-body.test.ts',
  'test/security/override-query.test.ts',
  'test/security/tunnel-endpoints.test.ts',
  'test/security/hostile-paths.test.ts',
];
const FULL = ['test/unit/**/*.test.ts', 'test/security/**/*.test.ts', 'test/integration/**/*.test.ts'];

export default defineConfig({
  test: {
    include: process.env.LEASH_MUTATE === 'small' ? SMALL : process.env.LEASH_MUTATE === 'bodies' ? BODIES : FULL,
    // Slow or load tests that measure rather than decide (rotation-load, fleet-like
    // replicas) and spawned-process tests add minutes per mutant and kill nothing the
    // others do not.
    exclude: ['test/e2e/**', 'test/integration/rotation-load.test.ts', 'test/integration/revoke-authority-cli.test.ts', 'test/integration/revoke-cli-dash.test.ts', 'node_modules/**'],
    pool: 'forks',
    maxWorkers: 1,
    // Every mutant reruns the test files that cover it. Isolated, each file imports leash's
    // module graph again: measured on five integration files, 28.5 s of imports against 13 s
    // of tests; shared, 3.3 s. The whole set passes shared, in one thread (Stryker's runner
    // forces the threads pool, one worker): 216 files, 2026-11-28; 278 files and 4,722 tests in 270 s, twentieth session.
    isolate: false,
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
