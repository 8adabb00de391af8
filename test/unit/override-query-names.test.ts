import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { methodOverrideParam, parseTarget } from '../../src/sidecar/proxy/target.js';

/**
 * Method-override parameter names in the query (target.ts methodOverrideParam), at the
 * edges of how a name is cut from its pair: a parameter without `=` is a name all the same,
 * and `+` is a space, which PHP's register rules read as `_`.
 */
describe('method-override names in the query', () => {
  it('a parameter without "=" is read by its whole name: `?_method` is one, `?_methods` and `?_HttpMethodX` are not', () => {
    expect(methodOverrideParam('?_method')).toBe('_method');
    expect(methodOverrideParam('?x=1&_HttpMethod')).toBe('_httpmethod');
    expect(methodOverrideParam('?x=1;X-HTTP-Method')).toBe('x_http_method');
    expect(methodOverrideParam('?_methods')).toBeUndefined();
    expect(methodOverrideParam('?_HttpMethodX')).toBeUndefined();
    expect(methodOverrideParam('?a&_methodx&b')).toBeUndefined();
    expect(parseTarget('/r/v1/x?_methods')).not.toBeInstanceOf(Error);
    expect(parseTarget('/r/v1/x?dry_run&_method')).toBeInstanceOf(BadRequestError);
  });

  it('"+" in a name is a space, read as "_": `X+HTTP+Method=PUT` is x_http_method', () => {
    expect(methodOverrideParam('?X+HTTP+Method=PUT')).toBe('x_http_method');
    expect(methodOverrideParam('?x+method+override=PUT')).toBe('x_method_override');
    expect(parseTarget('/r/v1/x?X+HTTP+Method+Override=DELETE')).toBeInstanceOf(BadRequestError);
  });
});
