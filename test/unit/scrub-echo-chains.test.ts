import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { REDACTED, ScrubStream, Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * The class behind two leaks found in the twentieth session (a value holding `"` or `\`
 * echoed in JSON; a value holding `%3f` echoed percent-encoded twice): every held value
 * with characters some encoder escapes, echoed by an upstream through every chain of up to
 * three of the encoders upstreams apply to what they were sent (JSON string,
 * `encodeURIComponent`, `encodeURI`, HTML), must come back as one marker with the text
 * around it intact — in whole-value scrubbing, the cheapest form, the one every header and
 * large body gets, streamed in chunks, and in full scrubbing.
 */
const VALUES = [
  'Xq7"vR2\\mK9pL4wT', // JSON's own escapes
  'Zx%3fQ7-mK9pL4wT', // reads as a percent escape
  'Ab&amp;Cd-mK9pL4wT', // reads as an HTML reference
  'Pq\\u0041Rs-mK9pL4wT', // reads as a JSON \u escape
  'Tt/Uu+Vv=Ww<Xx>Yy\'Zz', // what percent and HTML escape
  'plain-Value-0123456789', // nothing to escape
];
const ENCODERS: Record<string, (s: string) => string> = {
  json: (s) => JSON.stringify(s).slice(1, -1),
  pct: encodeURIComponent,
  uri: encodeURI,
  html: (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;'),
};
const chains: string[][] = [[]];
for (let depth = 0; depth < 3; depth++) for (const c of chains.filter((x) => x.length === depth)) for (const e of Object.keys(ENCODERS)) chains.push([...c, e]);

describe('a held value echoed through every chain of up to three encoders', () => {
  for (const value of VALUES) {
    const scrubber = new Scrubber([value]);
    it(`${JSON.stringify(value)}: ${chains.length} chains, each one marker in whole-value scrubbing`, () => {
      const missed: string[] = [];
      for (const chain of chains) {
        const echoed = chain.reduce((s, e) => ENCODERS[e]!(s), value);
        const text = `before ${echoed} after`;
        if (scrubber.whole(text) !== `before ${REDACTED} after`) missed.push(`${chain.join('→') || 'as is'}: ${scrubber.whole(text)}`);
      }
      expect(missed).toEqual([]);
    });
  }
});

/** `body` through a ScrubStream in chunks of `size` bytes. */
async function streamed(scrubber: Scrubber, body: string, size: number): Promise<string> {
  const chunks: Buffer[] = [];
  const bytes = Buffer.from(body, 'latin1');
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  return text(Readable.from(chunks).pipe(new ScrubStream(scrubber)));
}

describe('the same echoes in a streamed body (over 64 KiB: whole-value scrubbing, chunk by chunk)', () => {
  for (const value of VALUES) {
    const scrubber = new Scrubber([value]);
    it(`${JSON.stringify(value)}: every chain, cut into chunks of 1, 7 and 64 bytes`, async () => {
      const missed: string[] = [];
      for (const chain of chains) {
        const echoed = chain.reduce((s, e) => ENCODERS[e]!(s), value);
        const body = `${'a'.repeat(50)} ${echoed} ${'z'.repeat(50)}`;
        for (const size of [1, 7, 64]) {
          const out = await streamed(scrubber, body, size);
          if (out !== `${'a'.repeat(50)} ${REDACTED} ${'z'.repeat(50)}`) missed.push(`${chain.join('→') || 'as is'} / ${size}: ${out}`);
        }
      }
      expect(missed).toEqual([]);
    });
  }
});

describe('full scrubbing (error bodies up to 64 KiB) leaves nothing of the value either', () => {
  for (const value of VALUES) {
    const scrubber = new Scrubber([value]);
    it(`${JSON.stringify(value)}: every chain`, () => {
      const missed = chains
        .map((chain) => `before ${chain.reduce((s, e) => ENCODERS[e]!(s), value)} after`)
        .filter((text) => scrubber.full(text) !== `before ${REDACTED} after`);
      expect(missed).toEqual([]);
    });
  }
});
