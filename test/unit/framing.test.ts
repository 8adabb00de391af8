import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { decideFraming, framingHeader } from '../../src/sidecar/proxy/framing.js';
import { OVERRIDE_HEADERS, stripRequestHeaders } from '../../src/sidecar/proxy/headers.js';

/** The pure framing decision (framing.ts) and the Connection protection (headers.ts). */
const raw = (...pairs: [string, string][]) => pairs.flat();

describe('decideFraming', () => {
  const ok: [string, string[], [string, string] | undefined][] = [
    ['GET', raw(), undefined],
    ['GET', raw(['Content-Length', '0']), ['content-length', '0']],
    ['POST', raw(['content-length', '005']), ['content-length', '5']],
    ['POST', raw(['Transfer-Encoding', 'chunked']), ['transfer-encoding', 'chunked']],
    ['DELETE', raw(['transfer-encoding', ' ChUnKeD ']), ['transfer-encoding', 'chunked']],
    ['OPTIONS', raw(['Content-Length', '3']), ['content-length', '3']],
    ['GET', raw(['Content-Length', '1']), ['content-length', '1']],
    ['GET', raw(['Transfer-Encoding', 'chunked']), ['transfer-encoding', 'chunked']],
    // Empty list elements are ignored (RFC 9110 §5.6.1); Node's parser frames both as chunked.
    ['POST', raw(['Transfer-Encoding', ', chunked']), ['transfer-encoding', 'chunked']],
    ['POST', raw(['Transfer-Encoding', ''], ['Transfer-Encoding', 'chunked']), ['transfer-encoding', 'chunked']],
  ];
  it.each(ok)('%s %j → %j', (method, headers, header) => {
    const f = decideFraming(method, headers);
    expect(f).not.toBeInstanceOf(BadRequestError);
    expect(framingHeader(f as Exclude<typeof f, BadRequestError>)).toEqual(header);
  });

  const refused: [string, string[]][] = [
    ['POST', raw(['Transfer-Encoding', 'gzip, chunked'])],
    ['POST', raw(['Transfer-Encoding', 'identity, chunked'])],
    ['POST', raw(['Transfer-Encoding', 'chunked, identity'])],
    ['POST', raw(['Transfer-Encoding', 'chunked'], ['Transfer-Encoding', 'chunked'])],
    // A single coding that is not chunked (Node refuses these too; not a guarantee that rests on its parser).
    ['POST', raw(['Transfer-Encoding', 'gzip'])],
    ['POST', raw(['Transfer-Encoding', 'identity'])],
    ['POST', raw(['Transfer-Encoding', 'chunked-x'])],
    // Lines are separate list members: two halves never join into one coding.
    ['POST', raw(['Transfer-Encoding', 'chun'], ['Transfer-Encoding', 'ked'])],
    ['POST', raw(['Transfer-Encoding', 'chunked'], ['Content-Length', '5'])],
    ['POST', raw(['Content-Length', '5'], ['Content-Length', '6'])],
    ['POST', raw(['Content-Length', '-1'])],
    ['POST', raw(['Content-Length', '1e3'])],
    ['HEAD', raw(['Transfer-Encoding', 'chunked'])],
    ['TRACE', raw(['Content-Length', '4'])],
    ['HEAD', raw(['Content-Length', '1'])],
  ];
  it.each(refused)('%s %j → 400 leash_bad_request', (method, headers) => {
    const f = decideFraming(method, headers);
    expect(f).toBeInstanceOf(BadRequestError);
    expect((f as BadRequestError).type).toBe('leash_bad_request');
  });
});

describe('stripRequestHeaders and Connection', () => {
  it('never removes content-length, transfer-encoding or host because Connection names them', () => {
    const h = { host: 'l', 'content-length': '5', 'transfer-encoding': 'chunked', connection: 'Content-Length, TRANSFER-ENCODING, host, x-drop', 'x-drop': '1' };
    stripRequestHeaders(h, []);
    expect(h).toEqual({ host: 'l', 'content-length': '5', 'transfer-encoding': 'chunked' });
  });
  it('removes every method/URL override header', () => {
    const h: Record<string, string> = { 'content-type': 'a' };
    for (const o of OVERRIDE_HEADERS) h[o] = 'DELETE';
    stripRequestHeaders(h, []);
    expect(h).toEqual({ 'content-type': 'a' });
  });
});
