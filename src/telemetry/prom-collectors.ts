import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';

/** One of prom-client's default collectors (`prom-client/lib/metrics/<name>`). */
export type Collector = (registry: Registry, config: Record<string, unknown>) => void;

const requireCjs = createRequire(import.meta.url);

/**
 * prom-client's default collector by its `metricsList` name, or undefined for a name it does
 * not ship. Loaded with `require`, not imported: ES-importing these 13 CommonJS files left
 * ~5 MB more idle RSS in a process run from dist/src (a 6 MB malloc peak while Node parsed
 * them, kept by glibc; bench/RESULTS.md, "seventh"). The bundle (rolldown.config.mjs)
 * cannot follow a require by a computed name, so it links prom-collectors.bundled.ts
 * instead, which imports them statically; test/unit/default-metrics.test.ts checks that the
 * two give the same collectors.
 */
export function promCollector(name: string): Collector | undefined {
  try {
    return requireCjs(`prom-client/lib/metrics/${name}`) as Collector;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw e;
  }
}
