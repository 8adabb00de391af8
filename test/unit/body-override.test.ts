import { describe, expect, it } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import { BadRequestError } from '../../src/core/errors.js';
import { bodyScanner, MAX_PART_HEADER, OverrideGuard, overrideInBody, overrideSyntax, type OverrideScanner } from '../../src/sidecar/proxy/body-override.js';

/**
 * The body scanners (body-override.ts), fed every way a body can arrive: whole, split at
 * every byte boundary into two reads, and one byte per read. The answer must never depend
 * on where the reads fall.
 */
const FORM: IncomingHttpHeaders = { 'content-type': 'application/x-www-form-urlencoded' };
const JSON_TYPE: IncomingHttpHeaders = { 'content-type': 'application/json' };
const multipart = (boundary = 'XyZ123'): IncomingHttpHeaders => ({ 'content-type': `multipart/form-data; boundary=${boundary}` });

function scanWhole(headers: IncomingHttpHeaders, body: string): string | undefined {
  const r = overrideInBody('POST', headers, Buffer.from(body, 'latin1'));
  return r instanceof BadRequestError ? `error: ${r.message}` : r;
}

/** Every way of cutting `body` into reads gives the same answer as the whole. */
function scanAllSplits(headers: IncomingHttpHeaders, body: string): string | undefined {
  const whole = scanWhole(headers, body);
  const bytes = Buffer.from(body, 'latin1');
  const run = (parts: Buffer[]) => {
    const s = bodyScanner('POST', headers) as OverrideScanner;
    for (const p of parts) {
      const r = s.push(p);
      if (r !== undefined) return r instanceof BadRequestError ? `error: ${r.message}` : r;
    }
    const r = s.end();
    return r instanceof BadRequestError ? `error: ${r.message}` : r;
  };
  for (let cut = 0; cut <= bytes.length; cut++) {
    expect(run([bytes.subarray(0, cut), bytes.subarray(cut)]), `split at ${cut}`).toBe(whole);
  }
  expect(run([...bytes].map((b) => Buffer.from([b]))), 'one byte per read').toBe(whole);
  return whole;
}

describe('which bodies are read', () => {
  it('only POST bodies, in the syntaxes Rack, PHP, Laravel and servlets read an override from', () => {
    expect(overrideSyntax('POST', {})).toBe('form'); // Rack: a POST without a type is a form
    expect(overrideSyntax('POST', { 'content-type': '' })).toBe('form');
    expect(overrideSyntax('POST', { 'content-type': '; charset=utf-8' })).toBe('form');
    expect(overrideSyntax('POST', FORM)).toBe('form');
    expect(overrideSyntax('POST', { 'content-type': 'Application/X-WWW-Form-URLEncoded; charset=UTF-8' })).toBe('form');
    expect(overrideSyntax('POST', multipart())).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': 'multipart/mixed; boundary="a b"' })).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW' })).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data;boundary=abc' })).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; boundary = "abc" ; charset=utf-8' })).toBe('multipart');
    // whitespace before the type (a caller that did not trim it) is still a multipart type
    expect(overrideSyntax('POST', { 'content-type': ' multipart/form-data; boundary=abc' })).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': '\t\u00a0multipart/mixed; boundary=abc' })).toBe('multipart');
    // Rack reads the parameter name case-insensitively; PHP (strstr "boundary") finds no boundary and reads nothing
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; BOUNDARY=abc' })).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; Boundary="abc"' })).toBe('multipart');
    expect(overrideSyntax('POST', JSON_TYPE)).toBe('json');
    expect(overrideSyntax('POST', { 'content-type': 'application/vnd.api+json' })).toBe('json');
    expect(overrideSyntax('POST', { 'content-type': 'text/plain' })).toBeUndefined();
    expect(overrideSyntax('POST', { 'content-type': 'application/octet-stream' })).toBeUndefined();
    for (const method of ['GET', 'PUT', 'PATCH', 'DELETE']) expect(overrideSyntax(method, FORM)).toBeUndefined();
  });

  it('a multipart boundary that parsers could read differently is refused', () => {
    for (const type of [
      'multipart/form-data',
      'multipart/form-data; boundary=',
      'multipart/form-data; boundary=a; boundary=b',
      'multipart/form-data; boundary=a; x=boundary=b', // Rack takes the last `boundary=`
      'multipart/form-data; xboundary=a',
      'multipart/form-data; boundary="a\\"b"',
      `multipart/form-data; boundary=${'a'.repeat(71)}`,
      'multipart/form-data; boundary=a<b',
    ]) {
      expect(overrideSyntax('POST', { 'content-type': type }), type).toBeInstanceOf(BadRequestError);
    }
  });
});

describe('form bodies', () => {
  const cases: [body: string, expected: string | undefined][] = [
    ['_method=DELETE', '_method'],
    ['a=1&_method=DELETE', '_method'],
    ['_method=DELETE&a=1', '_method'],
    ['a=1;_method=put', '_method'],
    ['%5Fmethod=DELETE', '_method'],
    ['%5fmethod=DELETE', '_method'],
    ['_metho%64=DELETE', '_method'],
    ['%u005Fmethod=DELETE', '_method'],
    ['+_method=DELETE', '_method'],
    ['%20%20_method=DELETE', '_method'],
    [`${'+'.repeat(500)}_method=DELETE`, '_method'],
    ['_METHOD=DELETE', '_method'],
    ['.method=DELETE', '_method'], // PHP: `.` is `_`
    ['[method=DELETE', '_method'], // PHP: an unclosed `[` is `_`
    ['_method[]=DELETE', '_method'],
    ['_method%00junk=DELETE', '_method'],
    ['_method', '_method'], // a name without a value
    ['flag&_method=DELETE', '_method'], // after a name without a value
    ['flag;_method=DELETE', '_method'],
    ['a=1;_method=DELETE&b=3', '_method'], // the nearer separator ends a value
    ['%U005Fmethod=DELETE', '_method'],
    ['_HttpMethod=DELETE', '_httpmethod'],
    ['__METHOD_OVERRIDE__=DELETE', '__method_override__'],
    ['x-http-method-override=DELETE', 'x_http_method_override'],
    ['x-http-method-overr%69de=DELETE', 'x_http_method_override'], // `9` is a hex digit: %69 is `i`
    ['a=&_method=DELETE', '_method'], // after an empty value
    ['a=;b=&_method=DELETE', '_method'],
    // not overrides
    ['a=_method', undefined],
    ['a=_method&b=1', undefined], // a value is no name, whatever follows it
    ['_method+=DELETE', undefined], // `_method ` (PHP: `_method_`)
    ['_meth+od=DELETE', undefined], // `_meth od` (PHP: `_meth_od`)
    ['a=1&b=_method%3DDELETE', undefined],
    ['method=DELETE', undefined],
    ['x_method=DELETE', undefined],
    [`${'a'.repeat(100)}_method=DELETE`, undefined],
    ['_methodx=DELETE', undefined],
    ['%5_method=1', undefined], // a broken escape is taken as sent: `%5_method`
    // a broken escape after the name is no NUL that cuts it (PHP keeps `%zz` as sent; Rack refuses it)
    ['_method%zz=1', undefined],
    ['_method%--=1', undefined],
    ['_method%z5=1', undefined],
    ['_method%0u=1', undefined], // `u` only begins `%uXXXX` right after the `%`
    ['_method%u00zz=1', undefined],
    ['', undefined],
    ['model=gpt&input=hello+world', undefined],
  ];
  for (const [body, expected] of cases) {
    it(`${JSON.stringify(body.length > 60 ? `${body.slice(0, 30)}…${body.slice(-20)}` : body)} → ${expected ?? 'none'}`, () => {
      expect(scanAllSplits(FORM, body)).toBe(expected);
    });
  }
});

describe('multipart bodies', () => {
  const part = (disposition: string, value: string, b = 'XyZ123') => `--${b}\r\nContent-Disposition: ${disposition}\r\n\r\n${value}\r\n`;
  const body = (...parts: string[]) => `${parts.join('')}--XyZ123--\r\n`;
  const cases: [name: string, body: string, expected: string | undefined][] = [
    ['a plain field', body(part('form-data; name="_method"', 'DELETE')), '_method'],
    ['after a short field', body(part('form-data; name="a"', '1'), part('form-data; name="_method"', 'DELETE')), '_method'],
    ['a second name parameter', body(part('form-data; name="a"; name="_method"', 'DELETE')), '_method'],
    ['after a file', body(part('form-data; name="file"; filename="a.txt"', 'x'.repeat(300)), part('form-data; name="_method"', 'DELETE')), '_method'],
    ['unquoted', body(part('form-data; name=_method', 'DELETE')), '_method'],
    ['upper case parameter', body(part('form-data; NAME="_method"', 'DELETE')), '_method'],
    ['backslash-escaped', body(part('form-data; name="_meth\\od"', 'DELETE')), '_method'],
    ['RFC 8187', body(part("form-data; name*=UTF-8''%5Fmethod", 'DELETE')), '_method'],
    ['PHP spelling', body(part('form-data; name="_method[]"', 'DELETE')), '_method'],
    ['LF only', `--XyZ123\nContent-Disposition: form-data; name="_method"\n\nDELETE\n--XyZ123--\n`, '_method'],
    ['the body ends in the header', `--XyZ123\r\nContent-Disposition: form-data; name="_method"`, '_method'],
    // only `--` right after a delimiter closes the body: anything else starts a header block
    ['a delimiter followed by one "-"', `--XyZ123-\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--XyZ123--\r\n`, '_method'],
    ['a delimiter followed by "x-"', `--XyZ123x-\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--XyZ123--\r\n`, '_method'],
    ['the second Content-ID of a part', body(part('form-data\r\nContent-ID: <meta@example.com>\r\nContent-ID: _method', 'DELETE')), '_method'],
    // not overrides
    ['an ordinary upload', body(part('form-data; name="purpose"', 'fine-tune'), part('form-data; name="file"; filename="t.jsonl"', '{"a":1}')), undefined],
    ['a filename', body(part('form-data; name="file"; filename="_method"', 'x')), undefined],
    ['a value that looks like a header', body(part('form-data; name="a"', 'x\nname="_method"\n\ny')), undefined],
    ['a percent-escape in a quoted name (not decoded by multipart parsers)', body(part('form-data; name="%5Fmethod"', 'x')), undefined],
    // a quoted name is read whole: Rack's TOKEN end applies to bare names only
    ['a quoted name with a ":" in it', body(part('form-data; name="_method:x"', 'x')), undefined],
    ["a single-quoted name with a \",\" in it", body(part("form-data; name='_method,x'", 'x')), undefined],
    ['an HTML file with a Rails form in it', body(part('form-data; name="file"; filename="page.html"', '<form><input type="hidden" name="_method" value="delete"></form>')), undefined],
    ['the epilogue after the closing delimiter', `${body(part('form-data; name="a"', '1'))}name="_method"\r\n\r\n`, undefined],
    ['a preamble', `preamble name="_method"\r\n${body(part('form-data; name="a"', '1'))}`, undefined],
  ];
  for (const [name, b, expected] of cases) {
    it(`${name} → ${expected ?? 'none'}`, () => {
      expect(scanAllSplits(multipart(), b)).toBe(expected);
    });
  }

  it('a part header too long to inspect is refused', () => {
    const long = `--XyZ123\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ${'p'.repeat(MAX_PART_HEADER)}\r\n\r\nv\r\n--XyZ123--\r\n`;
    expect(scanWhole(multipart(), long)).toMatch(/^error: a multipart part header longer than/);
  });
});

describe('JSON bodies: the top-level object\'s keys', () => {
  const cases: [body: string, expected: string | undefined][] = [
    ['{"_method":"DELETE"}', '_method'],
    ['{"a":1,"_method":"DELETE"}', '_method'],
    [' \r\n{ "model" : "x" , "_method" : "DELETE" }', '_method'],
    ['\xef\xbb\xbf{"_method":"DELETE"}', '_method'], // a UTF-8 BOM first
    ['\t\r\n {"_method":"DELETE"}', '_method'],
    ['{"a":"x\\\\\\"y","_method":1}', '_method'], // an escaped backslash, then an escaped quote
    ['{"\\u005fmethod":"DELETE"}', '_method'],
    ['{"\\u005F\\u006D\\u0065thod":"DELETE"}', '_method'],
    ['{"_meth\\od":"DELETE"}', '_method'],
    ['{"a":{"b":[1,2,{"c":"}"}]},"_method":"put"}', '_method'],
    ['{"a":"\\"","_method":"put"}', '_method'],
    ['{"a":"\\\\","_method":"put"}', '_method'],
    // an escape that a read ends in covers one byte only: the empty string after it still ends at its quote
    ['{"a":["x\\"y",""],"_method":1}', '_method'],
    ['{"a":["x\\"y","",""],"b":{"c":""},"_method":1}', '_method'],
    // not overrides
    ['{"model":"gpt","messages":[{"role":"user","content":"call obj._method() please"}]}', undefined],
    ['{"messages":[{"_method":"DELETE"}]}', undefined],
    ['{"a":{"_method":"DELETE"}}', undefined],
    ['{"a":"_method"}', undefined],
    ['{"a":"\\",\\"_method\\":1"}', undefined],
    ['[{"_method":"DELETE"}]', undefined],
    ['["a","_method"]', undefined],
    ['x{"_method":"DELETE"}', undefined], // not JSON: nothing decoded
    ['"_method"', undefined],
    ['{"a":1} {"_method":"DELETE"}', undefined], // after the top-level value: not JSON any more
    ['{"method":"DELETE"}', undefined],
    ['{"input":[0.1,0.2,0.3],"encoding_format":"float"}', undefined],
  ];
  for (const [body, expected] of cases) {
    it(`${body} → ${expected ?? 'none'}`, () => {
      expect(scanAllSplits(JSON_TYPE, body)).toBe(expected);
    });
  }
});

describe('the guard on the wire', () => {
  it('a scanner that throws refuses the request (fail closed), passes nothing on and emits no error', async () => {
    const refusals: unknown[] = [];
    const throwing: OverrideScanner = {
      push: () => {
        throw new Error('scanner bug: body bytes _method=DELETE');
      },
      end: () => undefined,
    };
    const guard = new OverrideGuard(throwing, (found) => refusals.push(found));
    const passed: Buffer[] = [];
    const errors: unknown[] = [];
    guard.on('data', (c: Buffer) => passed.push(c)).on('error', (e) => errors.push(e));
    guard.write(Buffer.from('_method=DELETE'));
    await new Promise((r) => setImmediate(r));
    expect(passed).toEqual([]);
    expect(errors).toEqual([]);
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toBeInstanceOf(BadRequestError);
    expect((refusals[0] as Error).message).not.toContain('_method');
  });
});
