import { describe, expect, it } from 'vitest';
import { jsonText, printable } from '../../src/bin/terminal.js';

/**
 * What the CLI prints from the audit stream and the authority (written by sidecars, some of
 * which may be compromised): tables show controls and invisible or reordering characters as
 * `?`; `--json` escapes them, so the JSON and its values stay the same.
 */
const HOSTILE = ['\x1b[8m', '\x07', '\x9b2J', '\x9d0;title\x07', '\u200b', '\u200e', '\u202e', '\u2028', '\u2066', '\ufeff', '\x7f'];

describe('printable (tables)', () => {
  it('every control, zero-width, bidi and separator character becomes ?', () => {
    for (const h of HOSTILE) {
      const out = printable(`/v1/models${h}x`);
      expect(out, JSON.stringify(h)).not.toMatch(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/);
      expect(out.startsWith('/v1/models?')).toBe(true);
    }
    expect(printable('plain /v1/models/gpt-4o ünïcode')).toBe('plain /v1/models/gpt-4o ünïcode');
  });
});

describe('jsonText (--json)', () => {
  it('escapes C1 controls and invisible/bidi characters; parses back to the same values', () => {
    const value = { paths: HOSTILE.map((h) => `/p${h}`), n: 1, nested: { s: 'ünïcode ok' } };
    const text = jsonText(value);
    expect(text).not.toMatch(/[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/);
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f]/); // JSON.stringify's own escapes for C0 (newlines only between tokens)
    expect(JSON.parse(text)).toEqual(value);
    expect(text).toContain('ünïcode ok');
  });
});
