import { describe, expect, it } from 'vitest';
import { methodOverrideParam } from '../../src/sidecar/proxy/target.js';
import { expectOverrideRefused, phpOverrideSidecar, symfonyMethod } from '../helpers/php-override.js';

/**
 * Found triaging target.ts's survivors (twentieth session), fixed since:
 * methodOverrideParam decoded a parameter name with decodeURIComponent and, when that
 * threw (a `%` not followed by two hex digits, or escapes that are not UTF-8), compared
 * the name *as sent*. PHP decodes leniently (php_url_decode turns every valid `%XX` into
 * its byte and leaves a bad `%` alone) and then cuts the name at the first NUL (strlen):
 * `?_method%00%=DELETE` is `$_GET['_method'] = 'DELETE'`, which Symfony's and Laravel's
 * `Request::getMethod()` run a POST as. leash, comparing `_method%00%`, saw no override
 * and forwarded it with the credential. One undecodable escape anywhere after the NUL was
 * enough (`%`, `%zz`, `%ff`, `%E0`, a bare `%u`). Such a name is now decoded escape by
 * escape, as PHP does, before the NUL cut.
 * The upstream runs PHP's name rules (test/helpers/php-override.ts, as in override-query-nul.test.ts).
 */
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-override-undecodable-6b2d8f0a4c1e3579';

const setup = phpOverrideSidecar(SECRET);

const CASES = ['?_method%00%=DELETE', '?%5Fmethod%00%zz=DELETE', '?_method%00%ff=DELETE', '?_method%00%E0=DELETE', '?limit=5&+_method%00%u=DELETE'];

describe('a method override whose name has an undecodable escape after a NUL (PHP)', () => {
  it('PHP reads each of these names as _method, and Symfony would run the POST as DELETE', () => {
    for (const q of CASES) expect(symfonyMethod('POST', q.slice(1)), q).toBe('DELETE');
  });

  for (const query of CASES) {
    it(`POST /v1/messages${query} is refused, never forwarded`, async () => {
      await expectOverrideRefused(setup, query);
      expect(methodOverrideParam(query)).toBe('_method');
    });
  }
});
