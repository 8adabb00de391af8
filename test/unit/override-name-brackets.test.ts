import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { overrideInBody } from '../../src/sidecar/proxy/body-override.js';
import { overrideParamName } from '../../src/sidecar/proxy/target.js';

/**
 * Rack 2 (Rails 6 and 7.0) normalises a parameter name with `\A[\[\]]*([^\[\]]+)\]*`:
 * leading brackets are dropped, so `[_method]=DELETE` and `]]_method=DELETE` are
 * `params["_method"] = "DELETE"`, which Rack::MethodOverride runs as DELETE.
 */
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const form = (body: string) => {
  const r = overrideInBody('POST', FORM, Buffer.from(body));
  return r instanceof BadRequestError ? `error: ${r.message}` : r;
};

describe('a name with leading brackets, as Rack 2 reads it', () => {
  for (const name of ['[_method]', '[_method', ']_method', '[[]]_method]]', '%5B_method%5D', '[]_method']) {
    it(`${name}=DELETE is _method`, () => {
      expect(form(`a=1&${name}=DELETE`)).toBe('_method');
    });
  }
  it('the bare name check too', () => {
    expect(overrideParamName('[_method]')).toBe('_method');
  });
  it('other bracketed names are not overrides', () => {
    for (const name of ['[method]', '[a]_method', 'x[_method]', '[_methods]']) expect(form(`${name}=1`), name).toBeUndefined();
  });
});
