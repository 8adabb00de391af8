import { describe, expect, it } from 'vitest';
import { firstMatch, parseRule, ruleMatches, type AllowRule } from '../../src/config/rules.js';

function rule(text: string): AllowRule {
  const r = parseRule(text);
  if (typeof r === 'string') throw new Error(`expected ${JSON.stringify(text)} to parse: ${r}`);
  return r;
}
const segs = (path: string) => (path === '/' ? [] : path.slice(1).split('/'));
const matches = (text: string, method: string, path: string) => ruleMatches(rule(text), method, segs(path));

describe('parseRule', () => {
  it('parses method and segments, keeping the original text', () => {
    expect(rule('POST /v1/chat/completions')).toEqual({ text: 'POST /v1/chat/completions', method: 'POST', segments: ['v1', 'chat', 'completions'] });
    expect(rule('GET /')).toMatchObject({ method: 'GET', segments: [] });
    expect(rule('* /v1/*/x/**')).toMatchObject({ method: '*', segments: ['v1', '*', 'x', '**'] });
  });

  it('tolerates surrounding and repeated whitespace', () => {
    expect(rule('  GET    /v1/models  ')).toMatchObject({ method: 'GET', segments: ['v1', 'models'] });
    expect(rule('GET\t/v1')).toMatchObject({ method: 'GET', segments: ['v1'] });
  });

  const bad: [string, string][] = [
    ['GET', 'must be "METHOD /path", e.g. "POST /v1/chat/completions"'],
    ['', 'must be "METHOD /path", e.g. "POST /v1/chat/completions"'],
    ['GET /a /b', 'must be "METHOD /path", e.g. "POST /v1/chat/completions"'],
    ['get /v1', 'method must be upper-case letters or "*"'],
    ['G3T /v1', 'method must be upper-case letters or "*"'],
    ['** /v1', 'method must be upper-case letters or "*"'],
    ['GET v1/models', 'path must start with "/"'],
    ['GET *', 'path must start with "/"'],
    ['GET /v1//models', 'path has an empty segment'],
    ['GET /v1/', 'path has an empty segment'],
    ['GET /v1/../admin', 'path may not contain dot-segments'],
    ['GET /./v1', 'path may not contain dot-segments'],
    ['GET /**/admin', '"**" may only be the last segment'],
    ['GET /v1/**/**', '"**" may only be the last segment'],
    ['GET /v1/models*', '"*" must be a whole segment'],
    ['GET /v1/*.json', '"*" must be a whole segment'],
    ['GET /v1/***', '"*" must be a whole segment'],
  ];
  it.each(bad)('refuses %j with a message naming the problem', (text, message) => {
    expect(parseRule(text)).toBe(message);
  });
});

describe('ruleMatches', () => {
  it('literal paths match exactly, no prefix and no extension', () => {
    expect(matches('POST /v1/chat/completions', 'POST', '/v1/chat/completions')).toBe(true);
    expect(matches('POST /v1/chat/completions', 'POST', '/v1/chat/completions/x')).toBe(false);
    expect(matches('POST /v1/chat/completions', 'POST', '/v1/chat')).toBe(false);
    expect(matches('POST /v1/chat/completions', 'POST', '/v1/chat/Completions')).toBe(false);
  });

  it('the method must match exactly (upper case), "*" matches any', () => {
    expect(matches('GET /v1/models', 'POST', '/v1/models')).toBe(false);
    expect(matches('GET /v1/models', 'get', '/v1/models')).toBe(false);
    for (const m of ['GET', 'POST', 'DELETE', 'PATCH', 'PROPFIND']) expect(matches('* /v1/models', m, '/v1/models')).toBe(true);
  });

  it('"*" matches exactly one whole segment', () => {
    expect(matches('GET /v1/models/*', 'GET', '/v1/models/gpt-4o')).toBe(true);
    expect(matches('GET /v1/models/*', 'GET', '/v1/models')).toBe(false);
    expect(matches('GET /v1/models/*', 'GET', '/v1/models/a/b')).toBe(false);
    expect(matches('GET /v1/*/files', 'GET', '/v1/abc/files')).toBe(true);
    expect(matches('GET /v1/*/files', 'GET', '/v1/abc/def/files')).toBe(false);
    expect(matches('GET /*', 'GET', '/')).toBe(false);
  });

  it('a final "**" matches any rest, including nothing', () => {
    expect(matches('GET /v1/**', 'GET', '/v1')).toBe(true);
    expect(matches('GET /v1/**', 'GET', '/v1/a')).toBe(true);
    expect(matches('GET /v1/**', 'GET', '/v1/a/b/c/d')).toBe(true);
    expect(matches('GET /v1/**', 'GET', '/v2/a')).toBe(false);
    expect(matches('GET /v1/**', 'GET', '/')).toBe(false);
    expect(matches('* /**', 'DELETE', '/')).toBe(true);
    expect(matches('* /**', 'GET', '/anything/at/all')).toBe(true);
  });

  it('"GET /" matches only the root', () => {
    expect(matches('GET /', 'GET', '/')).toBe(true);
    expect(matches('GET /', 'GET', '/x')).toBe(false);
  });

  it('matches decoded segments literally: a segment holding "*" is not a wildcard', () => {
    expect(matches('GET /v1/*', 'GET', '/v1/*')).toBe(true);
    expect(matches('GET /v1/models', 'GET', '/v1/*')).toBe(false);
    expect(matches('GET /v1/models', 'GET', '/v1/**')).toBe(false);
  });
});

describe('firstMatch', () => {
  const rules = ['POST /v1/chat/completions', 'GET /v1/models', 'GET /v1/models/*'].map(rule);
  it('returns the first matching rule, undefined when none matches (no rule = deny)', () => {
    expect(firstMatch(rules, 'GET', ['v1', 'models', 'x'])?.text).toBe('GET /v1/models/*');
    expect(firstMatch(rules, 'DELETE', ['v1', 'models', 'x'])).toBeUndefined();
    expect(firstMatch([], 'GET', [])).toBeUndefined();
  });
});
