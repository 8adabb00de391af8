import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

/**
 * `node --import dist/bench/rss-preload.js …`, for bench/rss-breakdown.ts: when the process
 * gets SIGUSR2 it writes, to $LEASH_RSS_DUMP (a file path), its V8 heap statistics (per
 * space), process.memoryUsage(), the built-in modules loaded (process.moduleLoadList) and
 * the CommonJS files in require.cache; under --expose-gc, after three full GCs. Nothing else: it holds no timer and loads only
 * node:fs, node:module and node:v8, which an empty node given the same preload loads too.
 */
const out = process.env.LEASH_RSS_DUMP;
if (out) {
  process.on('SIGUSR2', () => {
    // Under --expose-gc: a full GC first (what is left when start-up's garbage is gone).
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) for (let i = 0; i < 3; i++) gc();
    const require = createRequire(import.meta.url);
    const dump = {
      heap: getHeapStatistics(),
      spaces: getHeapSpaceStatistics(),
      memory: process.memoryUsage(),
      builtins: (process as unknown as { moduleLoadList: string[] }).moduleLoadList,
      cjs: Object.keys(require.cache),
    };
    writeFileSync(out, JSON.stringify(dump));
  });
}
