import { describe, expect, it } from 'vitest';
import { methodOverrideParam } from '../../src/sidecar/proxy/target.js';
import { expectOverrideRefused, phpOverrideSidecar, symfonyMethod } from '../helpers/php-override.js';

/**
 * PHP reads a query parameter's name as a C string: main/php_variables.c decodes it
 * (php_url_decode) and registers it with `strlen`, so everything from a decoded NUL on is
 * cut — `?_method%00=DELETE` and `?_method%00anything=DELETE` are `$_GET['_method']`, which
 * Symfony's and Laravel's `Request::getMethod()` run a POST as. The upstream here runs that
 * reader with PHP's name rules, NUL included; the route allows only `POST /v1/messages`.
 */
const SECRET = 'sk-override-nul-3a9c1e7b5d2f4086';

const setup = phpOverrideSidecar(SECRET);

const NAMES = ['_method', '_METHOD', '%5Fmethod', '.method', '+_method'];
const TAILS = ['%00', '%00x', '%00%00', '%00=', '%00[]', '%u0000'];
const CASES = NAMES.flatMap((n) => TAILS.map((t) => `?${n}${t}=DELETE`)).flatMap((q) => [q, `?limit=5&${q.slice(1)}`]);

describe('a method override cut short by a NUL (PHP) is refused', () => {
  it.each(CASES)('POST /v1/messages%s', async (query) => {
    await expectOverrideRefused(setup, query);
  });

  it('names it canonically; a NUL elsewhere is no override', () => {
    expect(methodOverrideParam('?_method%00junk=DELETE')).toBe('_method');
    expect(methodOverrideParam('?x%00_method=DELETE')).toBeUndefined();
    expect(methodOverrideParam('?limit=5%00')).toBeUndefined();
  });
});
