import { describe, expect, it } from 'vitest';
import { parseRule, ruleMatches, tunnelSegment, type AllowRule } from '../../src/config/rules.js';
import { parseTarget, type Target } from '../../src/sidecar/proxy/target.js';

/**
 * Tunnel endpoints (rules.ts TUNNELS) spelt with compatibility characters. The path check
 * (target.ts readsAsDelimiter) refuses an encoded character that NFKC or Windows' best fit
 * turns into a delimiter, but a letter is let through: `％` no, `ｇ` yes. A server that
 * normalises (NFKC frameworks and filters, best fit on Windows: ASP.NET serves OData's
 * $batch) or compares as Java's equalsIgnoreCase does (`ı` and `ſ` upper-case to I and S)
 * (best fit also drops accents: `ĝ` is g) routes these to the tunnel, which no wildcard may reach for a write.
 */
const rule = (text: string): AllowRule => {
  const r = parseRule(text);
  if (typeof r === 'string') throw new Error(r);
  return r;
};
const enc = (s: string) => encodeURIComponent(s);

const SPELLINGS: [raw: string, tunnel: string][] = [
  ['ｇｒａｐｈｑｌ', 'graphql'], // fullwidth letters (NFKC, best fit)
  ['graphｑl', 'graphql'],
  ['＄batch', '$batch'], // fullwidth dollar
  ['＿bulk', '_bulk'], // fullwidth low line
  ['compoſite', 'composite'], // long s: NFKC s
  ['composıte', 'composite'], // dotless i: upper-cases to I
  ['ＢＡＴＣＨ', 'batch'],
  ['ｇｒａｐｈｑｌ．json', 'graphql'], // fullwidth full stop before a format suffix
  ['ĝraphql', 'graphql'], // best fit drops the accent
  ['bátch', 'batch'],
];

describe('a tunnel endpoint spelt with compatibility characters', () => {
  for (const [raw, tunnel] of SPELLINGS) {
    it(`${raw} is ${tunnel}: no wildcard reaches it for a write`, () => {
      const target = parseTarget(`/api/v1/${enc(raw)}`);
      // Either the path is refused outright, or the rules see the tunnel.
      if (!(target instanceof Error)) {
        const segs = (target as Target).segments;
        expect(tunnelSegment(segs[1]!)).toBe(tunnel);
        for (const text of ['POST /v1/*', 'POST /**', '* /**']) expect(ruleMatches(rule(text), 'POST', segs), text).toBe(false);
        expect(ruleMatches(rule('GET /**'), 'GET', segs)).toBe(true);
      }
    });
  }

  it('ordinary non-ASCII segments are not tunnels', () => {
    for (const s of ['café', 'données', 'グラフ', 'batché']) expect(tunnelSegment(s), s).toBeUndefined();
  });
});
