import { describe, expect, it } from 'vitest';
import { REDACTED, Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * An escaped echo is found in a decoded copy of the text and each match is mapped back to
 * the escaped characters it came from, which are replaced (docs/secret-hygiene.md, "Which
 * forms"). These pin that mapping: escapes left as they are (an unknown HTML entity) next
 * to or inside an echo, several echoes found in another order than they stand in the
 * text, echoes at the very start, side by side, or overlapping.
 */
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-proj-Ab3Cd4Ef5Gh6Ij7Kl8';
const u = (s: string) => s.replace(/-/g, '\\u002d');
const pct = (s: string) => s.replace(/-/g, '%2D');

describe('escapes left as they are keep their place', () => {
  const scrubber = new Scrubber([SECRET]);

  it('unknown HTML entities before an escaped echo (an HTML error page) do not shift what is replaced', () => {
    const text = `<p>caf&eacute; &mdash; key=${u(SECRET)} was refused &hellip;</p>`;
    expect(scrubber.whole(text)).toBe(`<p>caf&eacute; &mdash; key=${REDACTED} was refused &hellip;</p>`);
    expect(scrubber.full(text)).toBe(`<p>caf&eacute; &mdash; key=${REDACTED} was refused &hellip;</p>`);
  });

  it('a code point past U+10FFFF (left as written) before an escaped echo does not shift it either', () => {
    const text = `&#x110000; &#99999999; ${pct(SECRET)} end`;
    expect(scrubber.whole(text)).toBe(`&#x110000; &#99999999; ${REDACTED} end`);
  });

  it('a value that ends in `&letters`, echoed before a `;` with another character escaped (a cookie), goes whole', () => {
    const value = 'pw-7Tq9&xRvLm';
    const sc = new Scrubber([value]);
    expect(sc.whole(`token=${pct(value)}; Path=/; HttpOnly`)).toBe(`token=${REDACTED}; Path=/; HttpOnly`);
    expect(sc.whole(`{"token":"${u(value)};"}`)).toBe(`{"token":"${REDACTED};"}`);
  });

  it('a value that starts inside what reads as an entity, echoed with another character escaped, goes whole', () => {
    const value = 'xRvLm;pw-7Tq9';
    const sc = new Scrubber([value]);
    expect(sc.whole(`a&${pct(value)} b`)).toBe(`a&${REDACTED} b`);
  });
});

describe('several escaped echoes', () => {
  it('an escaped value before an escaped `Bearer <value>` (a longer form, searched first): both go', () => {
    const sc = new Scrubber([SECRET], { format: 'Bearer {{credential}}' });
    const text = `{"seen":"${u(SECRET)}","header":"Bearer ${u(SECRET)}","n":1}`;
    expect(sc.whole(text)).toBe(`{"seen":"${REDACTED}","header":"${REDACTED}","n":1}`);
    expect(sc.full(text)).toBe(`{"seen":"${REDACTED}","header":"${REDACTED}","n":1}`);
  });

  it('an escaped value before its escaped hex and base64 (longer forms): all go', () => {
    const sc = new Scrubber([SECRET]);
    const hex = Buffer.from(SECRET).toString('hex').replace(/^7/, '\\u0037');
    const b64 = Buffer.from(SECRET).toString('base64').replace(/=/g, '%3D').replace(/^c/, '%63');
    const text = `a=${pct(SECRET)} b=${hex} c=${b64} d`;
    const out = sc.whole(text);
    expect(out).toMatch(new RegExp(`^a=\\[REDACTED\\] b=\\[REDACTED\\] c=\\[REDACTED\\](%3D)* d$`));
  });

  it('an escaped echo at the very start of the text, or making up all of it, is replaced by the marker', () => {
    const sc = new Scrubber([SECRET]);
    expect(sc.whole(u(SECRET))).toBe(REDACTED);
    expect(sc.whole(`${pct(SECRET)}; Path=/`)).toBe(`${REDACTED}; Path=/`);
  });

  it('two escaped echoes side by side give two markers', () => {
    const sc = new Scrubber([SECRET]);
    expect(sc.whole(`${u(SECRET)}${pct(SECRET)}`)).toBe(`${REDACTED}${REDACTED}`);
    expect(sc.whole(`x${u(SECRET)}${u(SECRET)}y`)).toBe(`x${REDACTED}${REDACTED}y`);
  });

  it('escaped echoes of two held values that overlap give one marker over both', () => {
    const a = 'sk-live-AAAA-shared-tail';
    const b = 'shared-tail-BBBB-9999';
    const sc = new Scrubber([a, b]);
    expect(sc.whole(`k=${u('sk-live-AAAA-shared-tail-BBBB-9999')} end`)).toBe(`k=${REDACTED} end`);
  });
});

describe('the forms of a basic-auth route', () => {
  // Built inside the test (scrub-encodings.test.ts builds its scrubbers while collecting,
  // which mutation testing does not attribute to any test).
  it('Basic <base64(user:value)>, and that base64 unpadded or url-safe, each go whole', () => {
    const value = 'tok/With+Specials=And-Dash_77aa.q';
    const sc = new Scrubber([value], { basicUser: 'svc-agent' });
    const std = Buffer.from(`svc-agent:${value}`).toString('base64');
    expect(std.endsWith('=')).toBe(true);
    const forms = [`Basic ${std}`, std, std.replace(/=+$/, ''), std.replace(/\+/g, '-').replace(/\//g, '_'), std.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')];
    for (const f of forms) expect(sc.whole(`a ${f} b`), f).toBe(`a ${REDACTED} b`);
  });
});
