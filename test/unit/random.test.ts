import { describe, expect, it } from 'vitest';
import { seededRandom } from '../helpers/random.js';

/** The generated-case tests are only as good as their source of cases: every small modulus evenly hit. */
describe('seededRandom (test/helpers/random.ts)', () => {
  it('hits every residue of 2, 3, 4, 8, 10, 27 and 64 about equally, and repeats for one seed', () => {
    for (const m of [2, 3, 4, 8, 10, 27, 64]) {
      const next = seededRandom(424242);
      const counts = new Array<number>(m).fill(0);
      const n = 20_000 * m;
      for (let i = 0; i < n; i++) counts[next() % m]!++;
      for (const c of counts) expect(Math.abs(c - 20_000), `mod ${m}: ${counts.join(',')}`).toBeLessThan(1_000);
    }
    const a = seededRandom(7);
    const b = seededRandom(7);
    for (let i = 0; i < 100; i++) expect(a()).toBe(b());
  });
});
