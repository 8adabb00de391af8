import { describe, expect, it } from 'vitest';
import { methodOverrideParam, withoutQueryParam } from '../../src/sidecar/proxy/target.js';

/**
 * Query parameter names read as their readers read them, whatever the escapes: two gaps
 * of this family were found in the twentieth session (`?_method%00%=DELETE` forwarded, an
 * agent's `;key=` kept on a query-injection route). The class: every override name ×
 * every undecodable tail after a NUL × both separators, and the injected key's name under
 * the same spellings.
 */
const OVERRIDES = ['_method', '_HttpMethod', '__METHOD_OVERRIDE__', 'X-HTTP-Method-Override', 'x_http_method', 'X.Method.Override'];
/** Tails that make decodeURIComponent throw: a bare `%`, bad hex, a lone byte that is not UTF-8, an overlong or cut sequence, `%u` without digits. */
const UNDECODABLE = ['%', '%z', '%zz', '%ff', '%E0', '%C0%80', '%E2%82', '%u', '%%41'];
/** Percent-encode every character of a name. */
const allEscaped = (s: string): string => [...s].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');

describe('an override name with an undecodable escape after a NUL is still the override (PHP decodes escape by escape, then cuts at the NUL)', () => {
  for (const name of OVERRIDES) {
    it(name, () => {
      const canonical = methodOverrideParam(`?${name}=DELETE`);
      expect(canonical).toBeDefined();
      for (const tail of UNDECODABLE) {
        for (const spelt of [name, allEscaped(name)]) {
          for (const [before, sep] of [['', ''], ['a=1', '&'], ['a=1', ';']] as const) {
            const query = `?${before}${sep}${spelt}%00${tail}=DELETE`;
            expect(methodOverrideParam(query), query).toBe(canonical);
          }
        }
      }
    });
  }

  it('an undecodable name without a NUL is not an override (PHP keeps the bytes: `_method\\xff` is another name)', () => {
    for (const tail of UNDECODABLE) expect(methodOverrideParam(`?_method${tail}=DELETE`), tail).toBeUndefined();
  });
});

describe("withoutQueryParam removes the agent's parameter of the injected name, however it is spelt or separated", () => {
  it('after `&` or `;`, first or last, percent-encoded, with `+`, cut at a NUL, or with an undecodable tail after it', () => {
    const spellings = ['key', '%6Bey', '%6b%65%79', 'key%00', 'key%00x', 'key%00%', 'key%00%ff', '%6Bey%00%E0'];
    for (const spelt of spellings) {
      for (const query of [`?${spelt}=agent`, `?a=1&${spelt}=agent`, `?a=1;${spelt}=agent`, `?${spelt}=agent;a=1`, `?${spelt}=agent&a=1;b=2`]) {
        const out = withoutQueryParam(query, 'key');
        expect(out, query).not.toContain('agent');
      }
    }
  });

  it('keeps every other parameter with the separator it came with', () => {
    expect(withoutQueryParam('?a=1;key=x&b=2;c=3', 'key')).toBe('?a=1&b=2;c=3');
    expect(withoutQueryParam('?key=x;a=1&b=2', 'key')).toBe('?a=1&b=2');
    expect(withoutQueryParam('?a=1;b=2', 'key')).toBe('?a=1;b=2');
    expect(withoutQueryParam('?a=1;;b=2&&c', 'key')).toBe('?a=1;b=2&c');
  });

  it('names that only look alike are kept: another case, a longer name, an undecodable name that is not the key before a NUL', () => {
    expect(withoutQueryParam('?KEY=1;keys=2&key_=3&ke%zz=4&kex%00key=5', 'key')).toBe('?KEY=1;keys=2&key_=3&ke%zz=4&kex%00key=5');
  });
});
