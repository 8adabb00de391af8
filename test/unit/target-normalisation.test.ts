import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { parseTarget, readsAsDelimiter } from '../../src/sidecar/proxy/target.js';

/**
 * Path segments that change meaning once a server normalises them (target.ts
 * readsAsDelimiter), as a class: every code point of the Basic Multilingual Plane whose
 * NFKC form holds a delimiter (`/`, `\`, `%`, `;`, `?`, `#`, NUL) or is a dot-segment,
 * percent-encoded into a segment that an allow rule's `*` would match, is refused; every
 * other one goes through as the segment it is.
 */
const DELIMITERS = /[/\\%;?#\0]/;
const DOT = /^\.\.?(?:;.*)?$/;
// A segment of dots only (`...`): Windows drops trailing dots, so it is `.` or nothing there.
const encode = (s: string) => encodeURIComponent(s);

function codePoints(): string[] {
  const out: string[] = [];
  for (let c = 0x80; c <= 0xffff; c++) if (c < 0xd800 || c > 0xdfff) out.push(String.fromCharCode(c));
  return out;
}

describe('compatibility characters that read as delimiters once normalised', () => {
  const all = codePoints();
  const dangerous = all.filter((ch) => {
    const n = ch.normalize('NFKC');
    return n !== ch && (DELIMITERS.test(n) || DOT.test(n) || /^\.+$/.test(n));
  });

  it('the class is what it should be (fullwidth and small forms, dot leaders…)', () => {
    expect(dangerous.length).toBeGreaterThan(10);
    for (const ch of ['\uff0e', '\uff0f', '\uff3c', '\uff05', '\uff1f', '\uff03', '\uff1b', '\u2024', '\u2025', '\ufe52', '\ufe68']) expect(dangerous).toContain(ch);
  });

  it('each one, alone, doubled or inside a segment, is refused (400, never forwarded)', () => {
    for (const ch of dangerous) {
      // Inside a segment only a delimiter matters (`a...b` is an ordinary name).
      for (const seg of DELIMITERS.test(ch.normalize('NFKC')) ? [ch, ch + ch, `a${ch}b`] : [ch, ch + ch]) {
        const got = parseTarget(`/r/v1/models/${encode(seg)}/x`);
        expect(got, `U+${ch.charCodeAt(0).toString(16)} in ${JSON.stringify(seg)}`).toBeInstanceOf(BadRequestError);
      }
    }
  });

  it('Windows best-fit characters for "/", "\\" and "." are refused too', () => {
    for (const ch of ['\u2215', '\u2044', '\u2216', '\u29f5', '\u00a5', '\u20a9', '\u2024', '\u2026']) {
      expect(readsAsDelimiter(`a${ch}b`), `U+${ch.charCodeAt(0).toString(16)}`).toBe(true);
      expect(parseTarget(`/r/v1/${encode(`a${ch}b`)}`)).toBeInstanceOf(BadRequestError);
    }
  });

  it('every other code point goes through, decoded as sent', () => {
    const refused = new Set([...dangerous, '\u2215', '\u2044', '\u2216', '\u29f5', '\u00a5', '\u20a9', '\u2024', '\u2025', '\u2026']);
    let checked = 0;
    for (const ch of all) {
      if (refused.has(ch) || /[\x80-\x9f]/.test(ch)) continue; // C1 controls have their own refusal
      // NFKC can turn one character into several with a dot in the middle (`⒈` is `1.`): a segment, not a dot-segment.
      const got = parseTarget(`/r/v1/${encode(`a${ch}`)}`);
      if (got instanceof Error) throw new Error(`U+${ch.charCodeAt(0).toString(16)} refused: ${got.message}`);
      expect(got.segments[1]).toBe(`a${ch}`);
      checked++;
    }
    expect(checked).toBeGreaterThan(60_000);
  });

  it('names in other scripts are untouched', () => {
    for (const name of ['名前', 'café', 'Ölfeld', 'ｆｉｌｅｓ', 'файл', '🙂']) {
      const got = parseTarget(`/r/v1/files/${encode(name)}`);
      expect(got instanceof Error ? got.message : got.segments).toEqual(['v1', 'files', name]);
    }
  });
});
