import { describe, expect, it } from 'vitest';
import { BadRequestError, ConfigError, NoRouteError } from '../../src/core/errors.js';
import { HostResolver, PrefixResolver } from '../../src/sidecar/proxy/resolve.js';
import { rewriteLocation } from '../../src/sidecar/proxy/response.js';
import { parseTarget, parseWholePath } from '../../src/sidecar/proxy/target.js';
import { HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';
import { seededRandom } from '../helpers/random.js';

/**
 * Route resolvers (src/sidecar/proxy/resolve.ts): by path prefix (what every agent uses) and
 * by Host (for a proxy mode where tools keep their fixed URLs). Both parse the target with
 * the same checks: a path refused under one is refused under the other.
 */
const provider = new HandsOutAnything(undefined);
const openai = routeFor('https://api.openai.com/v1', provider, {}, 'openai');
const search = routeFor('http://127.0.0.1:9200', provider, {}, 'search');
const plainHttp = routeFor('http://internal.example:80/base', provider, {}, 'internal');
const withHost = (url: string, host: string) => requestOf('GET', url, ['Host', host]);

describe('PrefixResolver', () => {
  const r = new PrefixResolver((name) => ({ openai, search })[name as 'openai' | 'search']);

  it('takes the route from the first segment and leaves the rest as the target', () => {
    const got = r.resolve(requestOf('GET', '/openai/chat/completions?x=1'));
    if (got instanceof Error) throw got;
    expect(got.route).toBe(openai);
    expect(got.target).toEqual({ route: 'openai', segments: ['chat', 'completions'], rawPath: '/chat/completions', query: '?x=1' });
  });

  it('an unknown route and a hostile path are refused with their own errors', () => {
    expect(r.resolve(requestOf('GET', '/nope/x'))).toBeInstanceOf(NoRouteError);
    expect(r.resolve(requestOf('GET', '/openai/../admin'))).toBeInstanceOf(BadRequestError);
    expect(r.resolve(requestOf('GET', 'http://evil/x'))).toBeInstanceOf(BadRequestError);
  });

  it('the agent comes back through /<route>/', () => {
    expect(r.agentPath(openai, '/files/1')).toBe('/openai/files/1');
  });
});

describe('HostResolver', () => {
  const r = new HostResolver([openai, search, plainHttp]);

  it('picks the route whose upstream host the Host header names; the whole path is the target', () => {
    const got = r.resolve(withHost('/chat/completions?x=1', 'api.openai.com'));
    if (got instanceof Error) throw got;
    expect(got.route).toBe(openai);
    expect(got.target).toEqual({ route: 'openai', segments: ['chat', 'completions'], rawPath: '/chat/completions', query: '?x=1' });
  });

  it('Host is case-insensitive; a non-default port must match; the default port of the scheme may be written', () => {
    expect((r.resolve(withHost('/x', 'API.OpenAI.com')) as { route: unknown }).route).toBe(openai);
    expect((r.resolve(withHost('/x', 'api.openai.com:443')) as { route: unknown }).route).toBe(openai);
    expect((r.resolve(withHost('/x', '127.0.0.1:9200')) as { route: unknown }).route).toBe(search);
    expect((r.resolve(withHost('/x', 'internal.example:80')) as { route: unknown }).route).toBe(plainHttp);
    expect((r.resolve(withHost('/x', 'internal.example')) as { route: unknown }).route).toBe(plainHttp);
    // Another port, or the other scheme's default, is another origin: no route.
    expect(r.resolve(withHost('/x', 'api.openai.com:80'))).toBeInstanceOf(NoRouteError);
    expect(r.resolve(withHost('/x', 'internal.example:443'))).toBeInstanceOf(NoRouteError);
    expect(r.resolve(withHost('/x', '127.0.0.1'))).toBeInstanceOf(NoRouteError);
    expect(r.resolve(withHost('/x', '127.0.0.1:9201'))).toBeInstanceOf(NoRouteError);
  });

  it('an unknown Host is no route (not quoted back); no Host is a bad request', () => {
    const err = r.resolve(withHost('/x', 'evil.example'));
    expect(err).toBeInstanceOf(NoRouteError);
    expect((err as Error).message).not.toContain('evil');
    expect(r.resolve(requestOf('GET', '/x', []))).toBeInstanceOf(BadRequestError);
  });

  it('hostile paths are refused as under the prefix resolver', () => {
    for (const url of ['/../admin', '/a/%2e%2e/b', '/a%2fb', '/a\\b', 'http://evil/x', '*']) {
      expect(r.resolve(withHost(url, 'api.openai.com')), url).toBeInstanceOf(BadRequestError);
    }
  });

  it('two routes on one upstream host cannot be told apart: refused when the resolver is built', () => {
    const twin = routeFor('https://api.openai.com/other', provider, {}, 'twin');
    expect(() => new HostResolver([openai, twin])).toThrow(ConfigError);
    expect(() => new HostResolver([openai, twin])).toThrow(/routes\.twin: upstream host api\.openai\.com is also route "openai"'s/);
  });

  it('a same-origin redirect stays the upstream path (the agent already addresses the upstream host)', () => {
    expect(rewriteLocation('https://api.openai.com/v1/files/1', openai, (route, rest) => r.agentPath(route, rest))).toBe('/files/1');
    expect(rewriteLocation('/v1/files/1', openai, (route, rest) => r.agentPath(route, rest))).toBe('/files/1');
  });
});

describe('parseWholePath', () => {
  it('answers as parseTarget does for the same path under a route prefix', () => {
    const alphabet = ['/', '/', '/', 'a', 'b', 'v1', '.', '..', '%', '%2e', '%2F', '%41', '\\', ' ', '?', '&', ';', '\u00e9', '\u0007', '~'];
    const next = seededRandom(4242);
    for (let n = 0; n < 10_000; n++) {
      let path = '/';
      const len = next() % 10;
      for (let i = 0; i < len; i++) path += alphabet[next() % alphabet.length];
      const whole = parseWholePath(path);
      const prefixed = parseTarget(`/r${path.startsWith('/') ? '' : '/'}${path}`);
      if (prefixed instanceof BadRequestError) {
        expect(whole, path).toBeInstanceOf(BadRequestError);
        expect((whole as Error).message, path).toBe(prefixed.message);
      } else if (prefixed instanceof NoRouteError) throw new Error(`unexpected: ${path}`);
      else {
        if (whole instanceof Error) throw new Error(`${path}: ${whole.message}`);
        expect(whole.segments, path).toEqual(prefixed.segments);
        expect(whole.query, path).toBe(prefixed.query);
        // The prefix form drops the empty segment right after the route name (`/r//x`); so does the whole form.
        expect(whole.rawPath, path).toBe(prefixed.rawPath);
      }
    }
  });
});
