import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { parseTarget } from '../../src/sidecar/proxy/target.js';
import { parseTargetReference } from './target-reference.js';
import { seededRandom } from '../helpers/random.js';

/**
 * parseTarget has a one-scan fast path for plain paths (printable ASCII, no `%`, no `//`).
 * It must answer exactly as the general path (kept verbatim in target-reference.ts, the
 * implementation before the fast path) for every input: same error class and message,
 * same route, segments, raw path and query.
 */
/**
 * Refused by parseTarget before either path (a fragment; the engine's `http:/` rewrite:
 * target-exact.test.ts; a segment starting with `;`: path-parameters.test.ts).
 */
const refusedFirst = (url: string) => url.startsWith('/') && (url.includes('#') || /https?:\/|\/;/.test(url.split('?')[0]!));

const same = (url: string) => {
  const got = parseTarget(url);
  if (refusedFirst(url)) {
    expect(got, url).toBeInstanceOf(BadRequestError);
    return;
  }
  const want = parseTargetReference(url);
  if (want instanceof Error) {
    expect(got, url).toBeInstanceOf(want.constructor);
    expect((got as Error).message, url).toBe(want.message);
  } else expect(got, url).toEqual(want);
};

describe('parseTarget fast path', () => {
  it('answers as the general path on hand-picked targets', () => {
    for (const url of [
      '/', '//', '/openai', '/openai/', '/openai/v1/ok', '/openai/v1/ok/', '/openai/v1/ok?x=1&y=%2F', '/openai//v1', '/openai/v1//',
      '/./x', '/openai/../admin', '/openai/..;x/admin', '/openai/.well-known/x', '/openai/...', '/openai/.', '/openai/v1/./x',
      '/openai/a\\b', '/openai/a b', '/openai/\u00e9', '/openai/a\u0000', '/openai/..\u0001', '/openai/../a\\b', '/openai/%2e%2e/x',
      '/openai/%zz', '/openai/a%20b', '/openai/../%41', '/%6fpenai/v1', '/openai/v1?', '/openai?q', '/.', '/..', '/a/b/c/d/e/f',
      'openai/v1', '*', 'http://evil/x', '/openai/v1/ok#frag', '/openai/v1?x#y', '/openai/http:/x', '/openai/v1?u=http://x', '/openai/~user/x;y=1', "/openai/!$&'()*+,;=:@",
    ])
      same(url);
  });

  it('answers as the general path on random targets', () => {
    const alphabet = ['/', '/', '/', 'a', 'b', 'v1', '.', '..', '%', '%2e', '%2F', '%41', '\\', ' ', '?', '&', ';', '\u00e9', '\u0007', '~', '-', '_', '#', 'http:', 'https:'];
    const next = seededRandom(12345);
    for (let n = 0; n < 20_000; n++) {
      let url = '/';
      const len = next() % 12;
      for (let i = 0; i < len; i++) url += alphabet[next() % alphabet.length];
      same(url);
    }
  });
});
