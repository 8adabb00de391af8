import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { bodyScanner, MAX_PART_HEADER, overrideInBody, overrideSyntax, type OverrideScanner } from '../../src/sidecar/proxy/body-override.js';

/**
 * Where a multipart part's header block ends. Rack (`buf.index(EOL+EOL)`), Commons
 * FileUpload (Tomcat, Spring) and busboy end it at CRLF CRLF only; PHP at the first blank
 * line, bare LF included. A bare `\n\n` early in a header block ended the scanner's block
 * there, and a Content-Disposition after it (still in Rack's head) was never looked at:
 * Rails ran `_method=DELETE`.
 */
const TYPE = { 'content-type': 'multipart/form-data; boundary=B' };
const scan = (body: string) => {
  const r = overrideInBody('POST', TYPE, Buffer.from(body, 'latin1'));
  return r instanceof BadRequestError ? `error: ${r.message}` : r;
};
const splits = (body: string) => {
  const bytes = Buffer.from(body, 'latin1');
  for (let cut = 0; cut <= bytes.length; cut++) {
    const s = bodyScanner('POST', TYPE) as OverrideScanner;
    const r = s.push(bytes.subarray(0, cut)) ?? s.push(bytes.subarray(cut)) ?? s.end();
    expect(r, `split at ${cut}`).toBe('_method');
  }
};

describe('a multipart part header with a bare LF blank line before its CRLF CRLF', () => {
  const sneaky = '--B\r\nX-Pad: 1\n\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--B--\r\n';

  it('the name Rack reads after the bare blank line refuses the request, wherever the reads fall', () => {
    expect(scan(sneaky)).toBe('_method');
    splits(sneaky);
  });

  it('also with a real part after it in the same body', () => {
    expect(scan(`--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n${sneaky}`)).toBe('_method');
  });

  it('CRLF bodies real clients send are read as before', () => {
    const file = `--B\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nline\n\nname="_method"\n\n${'x'.repeat(40_000)}\r\n--B--\r\n`;
    expect(scan(file)).toBeUndefined();
  });
});

describe("a part name in single quotes (PHP's php_ap_getword_conf takes ' as a quote too)", () => {
  it("name='_method' refuses the request: Symfony and Laravel read $_POST['_method']", () => {
    expect(scan("--B\r\nContent-Disposition: form-data; name='_method'\r\n\r\nDELETE\r\n--B--\r\n")).toBe('_method');
    splits("--B\r\nContent-Disposition: form-data; name='_method'\r\n\r\nDELETE\r\n--B--\r\n");
  });

  it("an apostrophe inside a double-quoted name is just a character", () => {
    expect(scan(`--B\r\nContent-Disposition: form-data; name="it's"\r\n\r\nx\r\n--B--\r\n`)).toBeUndefined();
  });
});

describe('a part named by its Content-ID (Rack takes the name from it when Content-Disposition has none)', () => {
  it('Content-ID: _method refuses the request, whatever the reads', () => {
    const b = '--B\r\nContent-Disposition: form-data\r\nContent-ID: _method\r\n\r\nDELETE\r\n--B--\r\n';
    expect(scan(b)).toBe('_method');
    splits(b);
    expect(scan('--B\r\ncontent-id:   _method  \r\n\r\nDELETE\r\n--B--\r\n')).toBe('_method');
  });

  it('multipart/related Content-IDs real clients send are not names', () => {
    expect(scan('--B\r\nContent-Type: application/json\r\nContent-ID: <metadata@example.com>\r\n\r\n{}\r\n--B--\r\n')).toBeUndefined();
  });
});

describe("a bare name as Rack's TOKEN reads it (it ends at , / : ( ) < > ? = \\ too)", () => {
  for (const tail of [',x', '/x', ':x', '(x', ')', '<x', '>', '?x', '=x', '\\x']) {
    it(`name=_method${tail} is _method to Rack`, () => {
      expect(scan(`--B\r\nContent-Disposition: form-data; name=_method${tail}\r\n\r\nDELETE\r\n--B--\r\n`)).toBe('_method');
    });
  }
  it('a bare name that merely starts alike is not', () => {
    expect(scan('--B\r\nContent-Disposition: form-data; name=_methods\r\n\r\nx\r\n--B--\r\n')).toBeUndefined();
  });
});

describe('a boundary with a comma (Rack and Commons FileUpload end the boundary at it)', () => {
  for (const type of ['multipart/form-data; boundary=X,y', 'multipart/form-data; boundary="X,y"']) {
    it(`${type}: refused, or read with the boundary the upstream uses`, () => {
      const headers = { 'content-type': type };
      const body = Buffer.from('--X\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--X--\r\n');
      const syntax = overrideSyntax('POST', headers);
      expect(syntax instanceof BadRequestError || overrideInBody('POST', headers, body) !== undefined).toBe(true);
    });
  }
});

describe("PHP's boundary: the first '=' after the first \"boundary\" anywhere in the header", () => {
  for (const type of ['multipart/form-data; boundaryx=X; boundary=Y', 'multipart/form-data; boundary-old=X; boundary=Y', 'multipart/form-data; x="boundary=X"; boundary=Y']) {
    it(`${type}: refused (PHP splits at --X, leash would at --Y)`, () => {
      const headers = { 'content-type': type };
      const body = Buffer.from('--X\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--X--\r\n');
      expect(overrideSyntax('POST', headers) instanceof BadRequestError || overrideInBody('POST', headers, body) !== undefined).toBe(true);
    });
  }
  it("browsers' boundaries still pass", () => {
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW' })).toBe('multipart');
    expect(overrideSyntax('POST', { 'content-type': 'multipart/form-data; boundary=boundary-1234' })).toBe('multipart');
  });
});

describe('a part header block just under the cap', () => {
  // A block (what follows `--B` up to its CRLF CRLF) of MAX_PART_HEADER - 3 bytes: however the
  // reads fall, what is held unfinished is at most the block and `\r\n\r`, MAX_PART_HEADER bytes.
  const head = '\r\nContent-Disposition: form-data; name="_method"\r\nX-Pad: ';
  const block = head + 'p'.repeat(MAX_PART_HEADER - 3 - head.length);
  const body = `--B${block}\r\n\r\nDELETE\r\n--B--\r\n`;

  it('is read, not refused as too long, wherever a read ends near its end', () => {
    expect(block.length).toBe(MAX_PART_HEADER - 3);
    expect(scan(body)).toBe('_method');
    const bytes = Buffer.from(body, 'latin1');
    for (let cut = 3 + block.length - 40; cut <= 3 + block.length + 5; cut++) {
      const s = bodyScanner('POST', TYPE) as OverrideScanner;
      const r = s.push(bytes.subarray(0, cut)) ?? s.push(bytes.subarray(cut)) ?? s.end();
      expect(r, `split at ${cut}`).toBe('_method');
    }
  });
});
