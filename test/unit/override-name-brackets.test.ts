import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { bodyScanner, overrideInBody, type OverrideScanner } from '../../src/sidecar/proxy/body-override.js';
import { methodOverrideParam, overrideParamName } from '../../src/sidecar/proxy/target.js';

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

describe('more leading brackets than the form scanner keeps of a name', () => {
  // Rack 2's `\A[\[\]]*` drops any number of them. The query check reads the whole name;
  // the form body scanner keeps the first 64 characters (NAME_CAP), all brackets here.
  const name = `${'['.repeat(58)}_method`;
  it('in the query: _method', () => {
    expect(methodOverrideParam(`?${name}=DELETE`)).toBe('_method');
    expect(methodOverrideParam(`?${'%5B'.repeat(100)}_method=DELETE`)).toBe('_method');
  });
  it('in a form body: _method, however many (the run is kept to three, so the rest is not cut at 64)', () => {
    expect(form(`a=1&${name}=DELETE`)).toBe('_method');
    expect(form(`a=1&${']'.repeat(100)}_method=DELETE`)).toBe('_method');
    expect(form(`a=1&${'%5B'.repeat(70)}_method=DELETE`)).toBe('_method');
    expect(form(`a=1&${'[]'.repeat(500)}x-http-method-override=DELETE`)).toBe('x_http_method_override');
  });
  it('in a form body split across reads, one byte at a time', () => {
    const body = Buffer.from(`a=1&${'['.repeat(80)}_method=DELETE`);
    const scanner = bodyScanner('POST', FORM) as OverrideScanner;
    let hit: ReturnType<OverrideScanner['push']>;
    for (let i = 0; i < body.length && hit === undefined; i++) hit = scanner.push(body.subarray(i, i + 1));
    expect(hit ?? scanner.end()).toBe('_method');
  });
  it('a name cut at 64 is no longer taken for one it only starts like', () => {
    expect(form(`${'['.repeat(57)}_methodx=1`)).toBeUndefined();
  });
  it('the third leading bracket still counts: `[[method_override__` is PHP\'s `__method_override__`, `[[[…` is not', () => {
    expect(form('[[method_override__=DELETE')).toBe(overrideParamName('[[method_override__'));
    expect(form('[[method_override__=DELETE')).toBe('__method_override__');
    expect(form('[[[method_override__=DELETE')).toBe(overrideParamName('[[[method_override__'));
    expect(form('[[[[[method_override__=DELETE')).toBeUndefined();
  });
  it('the body scanner answers as overrideParamName does for every mix of leading brackets and short names', () => {
    const leads = ['', '[', ']', '[[', '][', '[]', '[[[', ']]]', '[][', '[[[[', '][][]', '['.repeat(40), ']'.repeat(90), '[]'.repeat(33)];
    const rests = ['_method', 'method', '_method]', 'method_override__', '_method_override__', '_methodx', 'x_http_method', 'x-method-override', ' _method', 'a]_method', '_method[x]', '.method'];
    for (const lead of leads) {
      for (const rest of rests) {
        const n = lead + rest;
        expect(form(`${n}=1`), n).toBe(overrideParamName(n));
      }
    }
  });
});
