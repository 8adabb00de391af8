/**
 * One seeded pseudo-random source for generated test cases (mulberry32): repeatable runs,
 * every bit usable. The LCG the tests used before, `x = (x * 1103515245 + 12345) &
 * 0x7fffffff` in doubles, loses its low bits once the product passes 2^53, so `next() % 4`
 * was 0 about 99.6 % of the time: "random" header lists were nearly always empty and one
 * branch of every coin flip was almost never taken (test/unit/random.test.ts keeps it honest).
 */
export function seededRandom(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) & 0x7fffffff;
  };
}

/** The same source as a float in [0, 1) (Math.random's range). */
export function seededUnit(seed: number): () => number {
  const next = seededRandom(seed);
  return () => next() / 0x80000000;
}
