import type { IncomingHttpHeaders } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { systemClock } from '../../src/core/clock.js';
import { EnvCredential } from '../../src/sidecar/credentials/static-sources.js';
import {
  decodableAcceptEncoding,
  hasDuplicateHost,
  INBOUND_CREDENTIAL_HEADERS,
  responseSkipSet,
  stripRequestHeaders,
} from '../../src/sidecar/proxy/headers.js';
import { rewriteLinkTargets, rewriteLocation } from '../../src/sidecar/proxy/response.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';

describe('INBOUND_CREDENTIAL_HEADERS', () => {
  it('covers every credential header DESIGN §5 names, plus x-goog-api-key', () => {
    for (const h of ['authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'cookie', 'x-goog-api-key']) expect(INBOUND_CREDENTIAL_HEADERS).toContain(h);
  });
});

describe('stripRequestHeaders', () => {
  const base = (): IncomingHttpHeaders => ({
    host: 'localhost:8080',
    'content-type': 'application/json',
    'content-length': '2',
    'x-request-id': 'r1',
    'user-agent': 'agent/1',
  });

  it('removes hop-by-hop headers, Connection-listed ones (any case, any spacing) and Expect', () => {
    const h: IncomingHttpHeaders = {
      ...base(),
      connection: 'keep-alive, X-Foo ,x-bar,,  X-BAZ',
      'x-foo': '1',
      'x-bar': '2',
      'x-baz': '3',
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      te: 'trailers',
      trailer: 'x-t',
      upgrade: 'h2c',
      'proxy-authenticate': 'Basic',
      expect: '100-continue',
    };
    stripRequestHeaders(h, []);
    expect(h).toEqual(base());
  });

  it('removes every agent credential header and the route’s extra ones', () => {
    const h: IncomingHttpHeaders = {
      ...base(),
      authorization: 'Bearer agent',
      'proxy-authorization': 'Basic x',
      'x-api-key': 'a',
      'api-key': 'b',
      'x-goog-api-key': 'c',
      cookie: 'session=1',
      'x-custom-secret': 'd',
      'x-service-token': 'e',
    };
    stripRequestHeaders(h, ['x-custom-secret', 'x-service-token']);
    expect(h).toEqual(base());
  });

  it('leaves end-to-end headers alone', () => {
    const h = base();
    stripRequestHeaders(h, []);
    expect(h).toEqual(base());
  });
});

describe('responseSkipSet', () => {
  it('always skips hop-by-hop and transfer-encoding (leash re-frames)', () => {
    const s = responseSkipSet(undefined);
    for (const h of ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization', 'transfer-encoding']) {
      expect(s.has(h), h).toBe(true);
    }
    expect(s.has('content-type')).toBe(false);
    expect(s.has('set-cookie')).toBe(false);
  });

  it('adds the names the upstream’s Connection header lists, lower-cased, from a string or a list', () => {
    expect(responseSkipSet('X-Secret-Hop, close').has('x-secret-hop')).toBe(true);
    const s = responseSkipSet(['a-hop', 'B-Hop']);
    expect(s.has('a-hop') && s.has('b-hop')).toBe(true);
  });

  it('does not leak one response’s Connection tokens into the shared default set', () => {
    responseSkipSet('x-only-once');
    expect(responseSkipSet(undefined).has('x-only-once')).toBe(false);
    expect(responseSkipSet('').has('x-only-once')).toBe(false);
  });
});

describe('hasDuplicateHost', () => {
  it('is true only for more than one Host line, in any case', () => {
    expect(hasDuplicateHost(['Host', 'a'])).toBe(false);
    expect(hasDuplicateHost(['Host', 'a', 'X-Host', 'b', 'Hosts', 'c'])).toBe(false);
    expect(hasDuplicateHost(['Host', 'a', 'host', 'b'])).toBe(true);
    expect(hasDuplicateHost(['HOST', 'a', 'Accept', '*/*', 'hOsT', 'a'])).toBe(true);
    expect(hasDuplicateHost([])).toBe(false);
  });
  it('counts only Host, not other four-letter names (From, Date, Link) next to it', () => {
    expect(hasDuplicateHost(['Host', 'a', 'From', 'ops@example.com'])).toBe(false);
    expect(hasDuplicateHost(['Date', 'Tue, 01 Dec 2026 00:00:00 GMT', 'Host', 'a', 'Link', '<x>'])).toBe(false);
    expect(hasDuplicateHost(['From', 'a', 'Date', 'b'])).toBe(false);
  });
});

describe('decodableAcceptEncoding', () => {
  it('keeps only codings leash can decode, with their parameters', () => {
    expect(decodableAcceptEncoding('gzip, deflate, br')).toBe('gzip, deflate, br');
    expect(decodableAcceptEncoding('gzip;q=1.0, zstd, br;q=0.5')).toBe('gzip;q=1.0, br;q=0.5');
    expect(decodableAcceptEncoding('GZIP')).toBe('GZIP');
  });
  it('falls back to identity when nothing is decodable, and leaves an absent header absent', () => {
    expect(decodableAcceptEncoding('zstd, compress')).toBe('identity');
    expect(decodableAcceptEncoding(undefined)).toBeUndefined();
    expect(decodableAcceptEncoding('')).toBeUndefined();
  });
});

describe('rewriteLinkTargets', () => {
  const up = (t: string) => t.replace('https://up.example', 'http://127.0.0.1:8080/r');
  it('rewrites each link target, parameters byte for byte', () => {
    expect(rewriteLinkTargets('<https://up.example/a?page=2>; rel="next", <https://up.example/a?page=9>; rel="last"', up)).toBe(
      '<http://127.0.0.1:8080/r/a?page=2>; rel="next", <http://127.0.0.1:8080/r/a?page=9>; rel="last"',
    );
    expect(rewriteLinkTargets('<https://up.example/x>;rel=next;title="a, <https://up.example/y>",<https://up.example/z>', up)).toBe(
      '<http://127.0.0.1:8080/r/x>;rel=next;title="a, <https://up.example/y>",<http://127.0.0.1:8080/r/z>',
    );
    expect(rewriteLinkTargets('<https://up.example/x>; title="q\\"<,>"; rel=a , \t<https://up.example/y>', up)).toBe(
      '<http://127.0.0.1:8080/r/x>; title="q\\"<,>"; rel=a , \t<http://127.0.0.1:8080/r/y>',
    );
  });
  it('leaves a value that is not a list of links as it is', () => {
    for (const v of ['', 'https://up.example/x', 'x <https://up.example/x>', '<https://up.example/x', '<https://up.example/x>; rel=a, junk <https://up.example/y>']) {
      expect(rewriteLinkTargets(v, up)).toBe(v);
    }
  });
});

describe('rewriteLocation', () => {
  const runtimes: RouteRuntime[] = [];
  afterAll(() => {
    for (const r of runtimes) r.close();
  });
  function route(name: string, upstream: string): RouteRuntime {
    const config = parseConfig(
      sidecarSchema,
      JSON.stringify({ routes: { [name]: { upstream, credential: { env: 'K' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: [] } } }),
      {},
    );
    const r = new RouteRuntime(name, config.routes[name]!, new EnvCredential('K', { K: 'v' }, systemClock, () => undefined), undefined);
    runtimes.push(r);
    return r;
  }

  it('rewrites absolute same-origin locations inside the base path to the local prefix', () => {
    const r = route('openai', 'https://api.example.com/base');
    expect(rewriteLocation('https://api.example.com/base/v1/x', r)).toBe('/openai/v1/x');
    expect(rewriteLocation('https://api.example.com/base/v1/x?a=1#f', r)).toBe('/openai/v1/x?a=1#f');
    expect(rewriteLocation('https://api.example.com/base', r)).toBe('/openai/');
    expect(rewriteLocation('https://api.example.com/base?x=1', r)).toBe('/openai/?x=1');
    expect(rewriteLocation('HTTPS://API.EXAMPLE.COM:443/base/v1', r)).toBe('/openai/v1');
  });

  it('rewrites absolute-path locations inside the base path', () => {
    const r = route('openai', 'https://api.example.com/base');
    expect(rewriteLocation('/base/v1/y', r)).toBe('/openai/v1/y');
  });

  it('makes same-origin locations outside the base path absolute, so the agent does not resolve them against leash', () => {
    const r = route('openai', 'https://api.example.com/base');
    expect(rewriteLocation('/elsewhere', r)).toBe('https://api.example.com/elsewhere');
    expect(rewriteLocation('/basement/x', r)).toBe('https://api.example.com/basement/x');
    expect(rewriteLocation('https://api.example.com/other', r)).toBe('https://api.example.com/other');
  });

  it('with a root upstream, every same-origin path maps under the prefix', () => {
    const r = route('svc', 'http://127.0.0.1:9999');
    expect(rewriteLocation('http://127.0.0.1:9999/a/b', r)).toBe('/svc/a/b');
    expect(rewriteLocation('/', r)).toBe('/svc/');
  });

  it('leaves other origins, protocol-relative, backslash, relative and non-http locations unchanged', () => {
    const r = route('openai', 'https://api.example.com/base');
    for (const loc of [
      'https://evil.example/base/v1/x',
      'http://api.example.com/base/v1/x', // other scheme = other origin
      'https://api.example.com:8443/base/v1/x', // other port
      'https://api.example.com.evil.example/base/x',
      '//api.example.com/base/v1/x',
      '//evil.example/x',
      '/\\evil.example/x',
      'v1/relative',
      'javascript:alert(1)',
      'ftp://api.example.com/base/x',
      'https://[bad',
    ]) {
      expect(rewriteLocation(loc, r), loc).toBe(loc);
    }
  });
});
