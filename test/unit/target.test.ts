import { describe, expect, it } from 'vitest';
import { BadRequestError, NoRouteError } from '../../src/core/errors.js';
import { parseTarget, withoutQueryParam, type Target } from '../../src/sidecar/proxy/target.js';

function ok(url: string): Target {
  const t = parseTarget(url);
  if (t instanceof Error) throw new Error(`expected ${JSON.stringify(url)} to parse, got ${t.type}: ${t.message}`);
  return t;
}

describe('parseTarget: accepted targets', () => {
  it('splits route, decoded segments, raw path and query', () => {
    expect(ok('/openai/v1/chat/completions')).toEqual({ route: 'openai', segments: ['v1', 'chat', 'completions'], rawPath: '/v1/chat/completions', query: '' });
  });

  it('keeps the query verbatim, including encoded characters and an empty query', () => {
    expect(ok('/r/v1/models?limit=2&after=a%2Fb').query).toBe('?limit=2&after=a%2Fb');
    expect(ok('/r/v1/models?').query).toBe('?');
    // Dot-segments and slashes in the query are data, not path.
    expect(ok('/r/x?p=../../etc&q=%2e%2e/%2f').segments).toEqual(['x']);
  });

  it('decodes each segment once for matching but keeps the raw (encoded) path for the upstream', () => {
    const t = ok('/r/v1/models/gpt-4o%3Amini/caf%C3%A9');
    expect(t.segments).toEqual(['v1', 'models', 'gpt-4o:mini', 'café']);
    expect(t.rawPath).toBe('/v1/models/gpt-4o%3Amini/caf%C3%A9');
  });

  it('decodes the route name once too', () => {
    expect(ok('/%6Fpenai/v1').route).toBe('openai');
  });

  it('route alone, with and without a trailing slash', () => {
    expect(ok('/openai')).toEqual({ route: 'openai', segments: [], rawPath: '/', query: '' });
    expect(ok('/openai/')).toEqual({ route: 'openai', segments: [], rawPath: '/', query: '' });
    expect(ok('/openai?x=1')).toEqual({ route: 'openai', segments: [], rawPath: '/', query: '?x=1' });
  });

  it('keeps a trailing slash on the rest of the path', () => {
    expect(ok('/r/v1/files/')).toMatchObject({ segments: ['v1', 'files'], rawPath: '/v1/files/' });
    expect(ok('/r/v1/files/?a=b')).toMatchObject({ rawPath: '/v1/files/', query: '?a=b' });
  });

  it('collapses empty segments so the upstream path can never start with "//"', () => {
    expect(ok('/r//evil.example/x')).toMatchObject({ route: 'r', segments: ['evil.example', 'x'], rawPath: '/evil.example/x' });
    expect(ok('//r///a//b')).toMatchObject({ route: 'r', segments: ['a', 'b'], rawPath: '/a/b' });
  });

  it('accepts dots that are not dot-segments', () => {
    expect(ok('/r/v1/file.json/...').segments).toEqual(['v1', 'file.json', '...']);
    expect(ok('/r/.well-known/x').segments).toEqual(['.well-known', 'x']);
    expect(ok('/r/a..b/x;y').segments).toEqual(['a..b', 'x;y']);
  });

  it('accepts every printable ASCII character a path may hold', () => {
    const t = ok("/r/a-b_c.d~e!$&'()*+,;=:@");
    expect(t.segments).toEqual(["a-b_c.d~e!$&'()*+,;=:@"]);
  });
});

describe('parseTarget: refusals', () => {
  const bad: [string, RegExp][] = [
    ['http://evil/x', /origin-form/],
    ['https://evil/openai/x', /origin-form/],
    ['*', /origin-form/],
    ['evil:443', /origin-form/],
    ['', /origin-form/],
    [' /r/x', /origin-form/],
    ['/\\evil/x', /backslash/],
    ['/r/a\\b', /backslash/],
    ['/r/a\0b', /control/],
    ['/r/a\tb', /control/],
    ['/r/a b', /control/],
    ['/r/a\x7fb', /control/],
    ['/r/caf\u00e9', /non-ASCII/],
    ['/r/%', /malformed percent/],
    ['/r/%2', /malformed percent/],
    ['/r/%zz', /malformed percent/],
    ['/r/%g0', /malformed percent/],
    ['/r/%c0%ae', /malformed percent/],
    ['/r/%ff', /malformed percent/],
    ['/r/%ed%a0%80', /malformed percent/], // a lone UTF-16 surrogate
    ['/r/a%2fb', /encoded slash/],
    ['/r/a%2Fb', /encoded slash/],
    ['/r/a%5cb', /encoded slash, backslash/],
    ['/r/a%00b', /NUL/],
    ['/r/%252e%252e', /double-encoded/],
    ['/r/%252F', /double-encoded/],
    ['/r/%255C', /double-encoded/],
    ['/r/%2500', /double-encoded/],
    ['/r/..', /dot-segment/],
    ['/r/.', /dot-segment/],
    ['/r/v1/../admin', /dot-segment/],
    ['/r/./x', /dot-segment/],
    ['/../r/x', /dot-segment/],
    ['/r/%2e%2e/x', /dot-segment/],
    ['/r/%2E%2e/x', /dot-segment/],
    ['/r/.%2e/x', /dot-segment/],
    ['/r/%2e./x', /dot-segment/],
    ['/r/%2e/x', /dot-segment/],
    ['/r/..;/x', /dot-segment/],
    ['/r/..;jsessionid=1/x', /dot-segment/],
    ['/r/.;x/y', /dot-segment/],
    ['/r/%2e%2e;/x', /dot-segment/],
  ];
  it.each(bad)('%j → leash_bad_request (%s)', (url, message) => {
    const t = parseTarget(url);
    expect(t).toBeInstanceOf(BadRequestError);
    const err = t as BadRequestError;
    expect(err.status).toBe(400);
    expect(err.type).toBe('leash_bad_request');
    expect(err.message).toMatch(message);
  });

  it('the query is not checked for path hazards, but the path before it is', () => {
    expect(parseTarget('/r/x?a=..\\')).not.toBeInstanceOf(Error);
    expect(parseTarget('/r/..?a=b')).toBeInstanceOf(BadRequestError);
  });

  it.each(['/', '//', '///', '/?x=1'])('%j → leash_no_route', (url) => {
    const t = parseTarget(url);
    expect(t).toBeInstanceOf(NoRouteError);
    expect((t as NoRouteError).status).toBe(404);
    expect((t as NoRouteError).type).toBe('leash_no_route');
  });
});

describe('withoutQueryParam', () => {
  it('returns "" for no query, and a query without the parameter unchanged', () => {
    expect(withoutQueryParam('', 'key')).toBe('');
    expect(withoutQueryParam('?a=1&b=2', 'key')).toBe('?a=1&b=2');
  });

  it('removes every occurrence, with or without a value', () => {
    expect(withoutQueryParam('?key=1&a=2&key=3&key&key=', 'key')).toBe('?a=2');
    expect(withoutQueryParam('?key=only', 'key')).toBe('');
  });

  it('removes percent- and plus-encoded spellings of the name', () => {
    expect(withoutQueryParam('?%6Bey=1&k%65y=2&%6b%65%79=3&a=4', 'key')).toBe('?a=4');
    expect(withoutQueryParam('?api+key=1&api%20key=2&apikey=3', 'api key')).toBe('?apikey=3');
  });

  it('keeps similar but different names, and is case-sensitive', () => {
    expect(withoutQueryParam('?keys=1&akey=2&key_=3&KEY=4', 'key')).toBe('?keys=1&akey=2&key_=3&KEY=4');
  });

  it('drops empty pairs and keeps undecodable names as they are', () => {
    expect(withoutQueryParam('?&&a=1&&', 'key')).toBe('?a=1');
    expect(withoutQueryParam('?%zz=1&key=2', 'key')).toBe('?%zz=1');
  });

  it('keeps values byte for byte', () => {
    expect(withoutQueryParam('?q=a%2Bb+c&key=x&r=%E2%9C%93', 'key')).toBe('?q=a%2Bb+c&r=%E2%9C%93');
  });
});
