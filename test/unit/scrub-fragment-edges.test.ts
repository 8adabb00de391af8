import { describe, expect, it } from 'vitest';
import { REDACTED, Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * Rule 2 of full scrubbing (docs/secret-hygiene.md): any run of 8 or more characters that
 * occurs in a held value is replaced, extended to the longest run that still occurs in
 * one — at the edges of the text too, and with several values held (after rotations).
 */
// A fake credential made up for this test: not a real key.
const A = 'sk-proj-Ab3Cd4Ef5Gh6Ij7Kl8';
const B = 'sk-proj-Zy9Xw8Vu7Ts6Rq5Po4';

describe('fragments at the edges of the text', () => {
  const scrubber = new Scrubber([A]);

  it('a fragment that ends the text (a header value, the last bytes of an error body) is replaced', () => {
    for (const frag of [A.slice(3, 11), A.slice(-8), A.slice(10, 21), A.slice(0, 20)]) {
      expect(scrubber.full(`key ${frag}`), frag).toBe(`key ${REDACTED}`);
      expect(scrubber.full(`${frag}`), frag).toBe(REDACTED);
    }
  });

  it('a fragment that starts the text is replaced', () => {
    expect(scrubber.full(`${A.slice(5, 15)} was refused`)).toBe(`${REDACTED} was refused`);
  });
});

describe('fragments with several values held', () => {
  it('a run of one value is replaced whole, although the other value holds only its first 8 characters', () => {
    const scrubber = new Scrubber([A, B]);
    // `sk-proj-` is in both; `sk-proj-Ab3C` only in A: the run is extended by A alone.
    expect(scrubber.full(`key ${A.slice(0, 12)} refused`)).toBe(`key ${REDACTED} refused`);
    expect(scrubber.full(`key ${B.slice(2, 16)} refused`)).toBe(`key ${REDACTED} refused`);
    expect(scrubber.full(`key ${A.slice(4, 20)}`)).toBe(`key ${REDACTED}`);
  });

  it('a run of the value that its percent-encoding does not hold (a query route holds both) is replaced whole', () => {
    const value = 'tok/With+Specials=And-Dash_77aa';
    const scrubber = new Scrubber([value]);
    expect(scrubber.full(`got ${value.slice(0, 14)} back`)).toBe(`got ${REDACTED} back`);
  });
});

describe('header names with no value held', () => {
  it('a scrubber holding nothing (a route before its first value) drops no header name', () => {
    const empty = new Scrubber([]);
    for (const name of ['x', 'content-type', 'x-request-id-with-a-long-name']) {
      expect(empty.nameHolds(name, true), name).toBe(false);
      expect(empty.nameHolds(name, false), name).toBe(false);
    }
  });
});
