import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { overrideInBody, overrideSyntax } from '../../src/sidecar/proxy/body-override.js';

/**
 * A servlet container decodes form field names (and, for multipart, the part headers) in
 * the charset the Content-Type names: Tomcat scans the body for `&` and `=` bytes and
 * decodes each name with `charset=`, then Spring's HiddenHttpMethodFilter reads
 * `_method`. In UTF-16LE, IBM037 (EBCDIC) or ISO-2022-JP the bytes of `_method` are not
 * the ASCII bytes the scanners look for, so such a body must not be passed on unread.
 */
const form = (charset: string) => ({ 'content-type': `application/x-www-form-urlencoded; charset=${charset}` });

/** The request is refused: by its Content-Type, or by what the scanner finds in the body. */
const blocked = (headers: Record<string, string>, body: Buffer): boolean =>
  overrideSyntax('POST', headers) instanceof BadRequestError || overrideInBody('POST', headers, body) !== undefined;

describe('a form or multipart body in a charset the scanners cannot read', () => {
  it('UTF-16LE: Tomcat reads _method=DELETE, the request is refused', () => {
    // name bytes decode (UTF-16LE) to "_method"; the value bytes to "DELETE"
    const body = Buffer.concat([Buffer.from('_method', 'utf16le'), Buffer.from('='), Buffer.from('DELETE', 'utf16le')]);
    expect(blocked(form('UTF-16LE'), body)).toBe(true);
  });

  it('IBM037 (EBCDIC) and ISO-2022-JP names are refused too, quoted or not, form or multipart', () => {
    // "_method" in IBM037; `=` kept as the ASCII byte Tomcat splits on
    const ebcdic = Buffer.from([0x6d, 0x94, 0x85, 0xa3, 0x88, 0x96, 0x84, 0x3d, 0xc4, 0xc5, 0xd3, 0xc5, 0xe3, 0xc5]);
    expect(blocked(form('IBM037'), ebcdic)).toBe(true);
    const iso2022 = Buffer.from('\x1b(B_method=DELETE', 'latin1');
    expect(blocked(form('"ISO-2022-JP"'), iso2022)).toBe(true);
    const mp = { 'content-type': 'multipart/form-data; boundary=XyZ; charset=utf-16' };
    expect(overrideSyntax('POST', mp)).toBeInstanceOf(BadRequestError);
    expect(overrideSyntax('POST', { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8; charset=utf-16be' })).toBeInstanceOf(BadRequestError);
  });

  it('spaces around the "=" do not hide the charset (Tomcat skips them: MediaType.parseMediaType)', () => {
    for (const type of ['application/x-www-form-urlencoded; charset = UTF-16LE', 'application/x-www-form-urlencoded; charset= utf-16', 'multipart/form-data; boundary=XyZ; charset\t=\tutf-16']) {
      expect(overrideSyntax('POST', { 'content-type': type }), type).toBeInstanceOf(BadRequestError);
    }
    expect(overrideSyntax('POST', { 'content-type': 'application/x-www-form-urlencoded; charset = utf-8' })).toBe('form');
  });

  it('the refusal says what to send instead', () => {
    const r = overrideSyntax('POST', form('utf-16'));
    expect(r).toBeInstanceOf(BadRequestError);
    expect((r as BadRequestError).message).toMatch(/charset/);
  });

  it('ASCII-compatible charsets real clients send still stream as before', () => {
    for (const cs of ['utf-8', 'UTF-8', 'utf8', '"utf-8"', 'us-ascii', 'ISO-8859-1', 'iso-8859-15', 'latin1', 'windows-1252']) {
      expect(overrideSyntax('POST', form(cs)), cs).toBe('form');
    }
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; boundary=XyZ; charset=UTF-8' })).toBe('multipart');
    // JSON is read by PHP as UTF-8 whatever the type says; a charset there changes nothing
    expect(overrideSyntax('POST', { 'content-type': 'application/json; charset=utf-16' })).toBe('json');
    expect(overrideSyntax('POST', { 'content-type': 'text/plain; charset=utf-16' })).toBeUndefined();
    expect(overrideInBody('POST', form('utf-8'), Buffer.from('a=1&_method=DELETE'))).toBe('_method');
  });
});
