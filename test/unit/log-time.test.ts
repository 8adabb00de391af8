import { describe, expect, it } from 'vitest';
import { isoTimeAt } from '../../src/telemetry/logger.js';
import { seededRandom } from '../helpers/random.js';

/** The log lines' time field (logger.ts isoTimeAt) is pino's isoTime, character for character. */
const pinoIsoTime = (ms: number) => `,"time":"${new Date(ms).toISOString()}"`;

describe('isoTimeAt', () => {
  it('writes what pino writes, at every millisecond of a second and across second, day and year borders', () => {
    const base = Date.UTC(2026, 10, 26, 16, 11, 59);
    for (let ms = 0; ms < 1_000; ms++) expect(isoTimeAt(base + ms)).toBe(pinoIsoTime(base + ms));
    for (const t of [Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1), 0, 999, 1_000, Date.UTC(1999, 11, 31, 23, 59, 59, 5)]) {
      expect(isoTimeAt(t)).toBe(pinoIsoTime(t));
    }
  });

  it('the once-a-second cache never serves another second (back and forth, random instants)', () => {
    const next = seededRandom(7);
    const base = Date.UTC(2026, 0, 1);
    for (let i = 0; i < 20_000; i++) {
      const t = base + (next() % 5_000) + (i % 3 === 0 ? 86_400_000 * (next() % 400) : 0);
      expect(isoTimeAt(t)).toBe(pinoIsoTime(t));
    }
  });

  it('years past 9999 as pino writes them', () => {
    const t = Date.UTC(10_000, 0, 1, 0, 0, 0, 7);
    expect(isoTimeAt(t)).toBe(pinoIsoTime(t));
  });
});
