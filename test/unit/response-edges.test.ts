import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { systemClock } from '../../src/core/clock.js';
import { EnvCredential } from '../../src/sidecar/credentials/static-sources.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import {
  isActiveContent,
  planResponse,
  relayHeaders,
  rewriteLinkTargets,
  rewriteLocation,
  scrubUpgradeHeaders,
  transferCodingProblem,
} from '../../src/sidecar/proxy/response.js';
import { Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * Edges of the response path's pure decisions that test/unit/response-head.test.ts does not
 * pin: empty Transfer-Encoding members, a Transfer-Encoding name in an unusual letter case,
 * the inert content types, Link values with trailing separators or odd quoting, and which
 * scrubbing header names get on the refused-handshake and 101 paths.
 * (Every secret in this file is a fake test value.)
 */
const SECRET = 'sk-unit-response-0123456789abcdef';
/** Mixed case all through: a lower-cased fragment of it is not a literal match. */
const MIXED = 'Hk7Qp2Wz9Rt4Mx8Ln3Vb6Jc1Fd5Gs0Ay';
const scrubber = new Scrubber([SECRET]);
const full = (_lower: string, v: string) => scrubber.full(v);

describe('transferCodingProblem: empty list members are ignored (RFC 9110 §5.6.1)', () => {
  const te = (...values: string[]) => values.flatMap((v) => ['Transfer-Encoding', v]);
  it('"chunked," ", chunked" and "chunked, ," are plain chunked', () => {
    for (const v of ['chunked,', ', chunked', 'chunked, ,', ' ,chunked, ']) expect(transferCodingProblem(te(v)), v).toBeUndefined();
  });
});

describe('planResponse: a Transfer-Encoding name in any letter case is seen', () => {
  const head = (statusCode: number, raw: string[]) => ({ statusCode, headers: {}, rawHeaders: raw });
  it('"TRANSFER-ENCODING: gzip, chunked" and "transfer-Encoding: gzip" are refused like the usual spellings', () => {
    for (const name of ['TRANSFER-ENCODING', 'transfer-Encoding', 'Transfer-encoding']) {
      for (const status of [200, 401]) {
        expect(planResponse(head(status, [name, 'gzip, chunked']), 'GET', scrubber, (l) => l), name).toEqual({
          kind: 'refuse',
          problem: 'a transfer-coding other than chunked',
        });
      }
    }
  });
});

describe('isActiveContent: what is inert', () => {
  it('without the repeated flag, one Content-Type is judged by itself', () => {
    expect(isActiveContent('application/json')).toBe(false);
    expect(isActiveContent('text/html')).toBe(true);
  });
  it('spaces before the parameters do not change the type', () => {
    for (const t of ['application/json ; charset=utf-8', 'text/plain\t; charset=utf-8', 'image/png ;q=1']) expect(isActiveContent(t), t).toBe(false);
  });
  it('audio, video and font types are media, never documents', () => {
    for (const t of ['audio/mpeg', 'video/mp4', 'font/woff2', 'Audio/Ogg', 'VIDEO/webm; codecs=vp9']) expect(isActiveContent(t), t).toBe(false);
  });
  it('a type without a slash is sniffed by browsers, even when it starts like a media type', () => {
    for (const t of ['audiox', 'videox', 'fontx', 'imagex', 'audio', '/html']) expect(isActiveContent(t), t).toBe(true);
  });
  it('+json is inert under application/ only', () => {
    expect(isActiveContent('application/problem+json')).toBe(false);
    for (const t of ['text/x+json', 'multipart/x+json', 'model/x+json']) expect(isActiveContent(t), t).toBe(true);
  });
});

describe('rewriteLinkTargets: separators and quoting', () => {
  const up = (t: string) => t.toUpperCase();
  it('a trailing comma or whitespace after the last link does not stop the rewrite', () => {
    expect(rewriteLinkTargets('</a>; rel=next, ', up)).toBe('</A>; rel=next, ');
    expect(rewriteLinkTargets('</a>, </b>\t', up)).toBe('</A>, </B>\t');
  });
  it('a target ending in a quote character does not start a quoted parameter', () => {
    expect(rewriteLinkTargets('</a">; rel=next, </b>; rel=last', up)).toBe('</A">; rel=next, </B>; rel=last');
  });
  it('an unterminated quoted parameter ends the value (no endless scan)', () => {
    expect(rewriteLinkTargets('</a>; title="x, </b>', up)).toBe('</A>; title="x, </b>');
    expect(rewriteLinkTargets('</a>; title="x\\', up)).toBe('</A>; title="x\\');
  });
});

describe('header names on the raw (refused handshake) and 101 paths', () => {
  it('relayHeaders scrubs names fully by default: a fragment of the secret in a name drops it', () => {
    const out = relayHeaders([`x-${SECRET.slice(3, 15)}`, '1', 'x-kept', 'yes'], new Set(), scrubber, full);
    expect(out).toEqual({ headers: ['x-kept', 'yes'], dropped: 1 });
  });

  it('scrubUpgradeHeaders drops a name holding a masked form of the secret', () => {
    const headers: Record<string, string> = { [`x-${SECRET.slice(0, 7)}*****${SECRET.slice(-4)}`]: '1', 'x-kept': 'yes' };
    expect(scrubUpgradeHeaders(headers, scrubber)).toBe(1);
    expect(headers).toEqual({ 'x-kept': 'yes' });
  });

  it('scrubUpgradeHeaders drops a name holding a fragment of the secret in another letter case (Node lower-cases 101 names)', () => {
    const mixed = new Scrubber([MIXED]);
    const name = `x-${MIXED.slice(4, 16).toLowerCase()}`;
    expect(mixed.full(name)).toBe(name);
    const headers: Record<string, string> = { [name]: '1', 'x-kept': 'yes' };
    expect(scrubUpgradeHeaders(headers, mixed)).toBe(1);
    expect(headers).toEqual({ 'x-kept': 'yes' });
  });

  it('scrubUpgradeHeaders drops an array header when any one of its values holds a byte Node refuses', () => {
    const headers: Record<string, string[] | string> = { 'set-cookie': ['a=1', 'b=2\u007f'], 'x-kept': 'yes' };
    expect(scrubUpgradeHeaders(headers, scrubber)).toBe(1);
    expect(headers).toEqual({ 'x-kept': 'yes' });
  });
});

describe('rewriteLocation: only an origin-relative path or an absolute http(s) URL as written is brought back', () => {
  let r: RouteRuntime | undefined;
  afterAll(() => r?.close());
  it('forms a URL parser would still resolve to the upstream (one slash, no slash, a leading space) are left as sent', () => {
    const config = parseConfig(
      sidecarSchema,
      JSON.stringify({ routes: { openai: { upstream: 'https://api.example.com/base', credential: { env: 'K' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: [] } } }),
      {},
    );
    r = new RouteRuntime('openai', config.routes.openai!, new EnvCredential('K', { K: 'v' }, systemClock, () => undefined), undefined);
    expect(rewriteLocation('https://api.example.com/base/v1/x', r)).toBe('/openai/v1/x');
    for (const loc of ['https:/api.example.com/base/v1/x', 'https:api.example.com/base/v1/x', ' https://api.example.com/base/v1/x', '\thttps://api.example.com/base/v1/x']) {
      expect(rewriteLocation(loc, r), JSON.stringify(loc)).toBe(loc);
    }
  });
});
