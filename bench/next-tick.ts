/**
 * The standalone reproduction behind src/core/tick-shape.ts (bench/RESULTS.md, "sixth"):
 * ns per `process.nextTick` after `process.nextTick` has run a few hundred times (feedback,
 * no optimised code) and one full collection has run with no queue entry alive.
 *
 *   node --expose-gc dist/bench/next-tick.js [--warm=N] [--no-gc] [--hold]
 *
 * --hold calls holdTickObjectShape() first, as `leash` does. On Node 20.20 (pinned,
 * `taskset -c 1`): ~210 ns without --hold, ~40 ns with it or with --no-gc.
 */
import { holdTickObjectShape } from '../src/core/tick-shape.js';

const flag = (name: string) => process.argv.includes(`--${name}`);
const WARM = Number(process.argv.find((a) => a.startsWith('--warm='))?.slice(7) ?? 1_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!flag('no-gc') && gc === undefined) throw new Error('run with node --expose-gc (or pass --no-gc)');

const noop = (): void => {};
/** n nextTicks, 100 per turn of the event loop (a queue of 100, then a macrotask boundary). */
async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i += 100) {
    await new Promise<void>((resolve) => {
      for (let j = 0; j < 99; j++) process.nextTick(noop);
      process.nextTick(resolve);
    });
  }
}
const pause = () => new Promise((r) => setTimeout(r, 200));

if (flag('hold')) holdTickObjectShape();
await ticks(WARM);
await pause();
if (!flag('no-gc')) gc!();
await pause();
await ticks(200_000);
const t0 = process.hrtime.bigint();
await ticks(2_000_000);
const ns = Number(process.hrtime.bigint() - t0) / 2_000_000;
console.log(`warm ${WARM}, ${flag('no-gc') ? 'no full collection' : 'one full collection'}${flag('hold') ? ', entry shape held' : ''}: ${ns.toFixed(1)} ns per nextTick`);
