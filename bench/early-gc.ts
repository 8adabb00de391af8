/**
 * Preload for bench/gc-state.ts (`node --expose-gc --import=<this> …`): one full
 * (mark-compact) collection a fixed time after start, before any load, standing in for
 * the memory reducer's, which V8 runs ~8 s into an idle process. The time is
 * LEASH_BENCH_EARLY_GC_MS (default 3000). The timer is unref'd: it keeps nothing alive.
 */
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('bench/early-gc: run node with --expose-gc');
setTimeout(gc, Number(process.env.LEASH_BENCH_EARLY_GC_MS ?? 3_000)).unref();
