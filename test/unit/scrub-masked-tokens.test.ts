import { describe, expect, it } from 'vitest';
import { REDACTED, Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * Rule 3 of full scrubbing (docs/secret-hygiene.md): a token of `[A-Za-z0-9_-]` characters
 * around a mask run is redacted when its visible prefix (≥ 3 characters) starts a held
 * value or its visible suffix (≥ 4 characters) ends one. Visible parts here are shorter
 * than a fragment (8), so rule 2 cannot be what removes them.
 */
// A fake credential made up for this test: not a real key.
const SECRET = 'sk_Za9-Bb0c1Dd2Ee3Ff4Gg5Hh6';
const scrubber = new Scrubber([SECRET]);
const TOKEN = /^[A-Za-z0-9_-]$/;

describe('the token around a mask run is exactly the [A-Za-z0-9_-] characters next to it', () => {
  it('a masked prefix holding _, an upper-case Z and a lower-case a is found, whatever bounds it', () => {
    for (const masked of ['sk_****', 'sk_Z****', 'sk_Za****', 'sk_Za9****']) {
      for (const [open, close] of [[' ', ' '], ['[', ']'], ['{', '}'], ['`', '`'], ['(', ')'], ['"', '"'], ['@', '~'], ['/', '^'], [':', '|']] as const) {
        const text = `Incorrect API key provided:${open}${masked}${close}(see docs)`;
        expect(scrubber.full(text), text).toBe(`Incorrect API key provided:${open}${REDACTED}${close}(see docs)`);
      }
    }
  });

  it('every ASCII character before the visible prefix: a token character joins the token (no longer a prefix), any other bounds it', () => {
    for (let c = 0; c < 128; c++) {
      const ch = String.fromCharCode(c);
      if (ch === '*' || ch === '.') continue; // mask characters themselves
      const text = `${ch}sk_Za****`;
      expect(scrubber.full(text), `char ${c}`).toBe(TOKEN.test(ch) ? text : `${ch}${REDACTED}`);
    }
  });

  it('every ASCII character after the visible suffix: a token character joins the token (no longer a suffix), any other bounds it', () => {
    for (let c = 0; c < 128; c++) {
      const ch = String.fromCharCode(c);
      if (ch === '*' || ch === '.') continue;
      const text = `****5Hh6${ch}`;
      expect(scrubber.full(text), `char ${c}`).toBe(TOKEN.test(ch) ? text : `${REDACTED}${ch}`);
    }
  });
});

describe('how much of a masked token must be visible', () => {
  it('a visible prefix of 3 characters is enough; 2 or none is ordinary text', () => {
    expect(scrubber.full('key: sk_*****, retry')).toBe(`key: ${REDACTED}, retry`);
    expect(scrubber.full('key: sk*****, retry')).toBe('key: sk*****, retry');
    expect(scrubber.full('key: s*****, retry')).toBe('key: s*****, retry');
  });

  it('a suffix of 4 characters is enough; 3 is ordinary text', () => {
    expect(scrubber.full('key: *****5Hh6, retry')).toBe(`key: ${REDACTED}, retry`);
    expect(scrubber.full('key: *****Hh6, retry')).toBe('key: *****Hh6, retry');
  });

  it('a mask run with nothing visible around it is kept (a hidden password field in an error message)', () => {
    const texts = [
      'the password field was ******** (hidden)',
      '{"error":"invalid credentials","password":"********"}',
      'Authorization: Bearer ***',
      'token: •••••• expired',
      'waiting … done',
    ];
    for (const t of texts) expect(scrubber.full(t), t).toBe(t);
  });
});

describe('a masked key right after another mask run', () => {
  // The visible text between two runs is both the suffix of one masked token and the
  // prefix of the next (it was once read only as the first run's suffix, and `sk_Za`, 5
  // characters, is too short for rule 2). Both tokens redacted share one marker.
  it('"...sk_Za****" loses its masked key', () => {
    expect(scrubber.full('keys: ...sk_Za****')).toBe(`keys: ...${REDACTED}`);
  });

  it('two masked keys sharing their visible text give one marker, and the text around is kept', () => {
    expect(scrubber.full('a sk_Za****sk_Za**** b')).toBe(`a ${REDACTED} b`);
    // A visible middle that ends the value and starts no masked key stays the first token's.
    expect(scrubber.full('a ****Gg5Hh6****x b')).toBe(`a ${REDACTED}****x b`);
  });
});
