import { describe, expect, it } from 'vitest';
import { BadRequestError, NoRouteError } from '../../src/core/errors.js';
import { HostResolver } from '../../src/sidecar/proxy/resolve.js';
import { parseTarget } from '../../src/sidecar/proxy/target.js';
import { HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';

/**
 * Each refusal of a request target says which rule refused it (the `message` of the
 * agent's JSON error, docs/errors.md): the agent's developer is told what to send instead.
 * The wording may change; that there is a reason, and which one, is asserted.
 */
describe('a refused request target names its reason', () => {
  const cases: [string, RegExp][] = [
    ['/r/v1/repos/x#/issues', /"#".*fragment/],
    ['/r/v1/x?_method=DELETE', /method override \("_method"\)/],
    ['/r/pub/http:/evil/x', /"http:\/" or "https:\/"/],
    ['/r/pub/https:/evil/x', /"http:\/" or "https:\/"/],
    ['/r/v1/files/;x', /segment starting with ";"/],
    ['/r/v1/a%1bb', /encoded control character/],
    ['/r/v1/a%c2%85b', /encoded control character/],
    ['/r/v1/%EF%BC%8E%EF%BC%8E', /reads as "\/", "\\", "\." or another delimiter/],
    ['/r/v1/a%E2%88%95b', /reads as "\/", "\\", "\." or another delimiter/],
  ];
  it.each(cases)('%j → leash_bad_request (%s)', (url, reason) => {
    const t = parseTarget(url);
    expect(t).toBeInstanceOf(BadRequestError);
    expect((t as BadRequestError).status).toBe(400);
    expect((t as BadRequestError).message).toMatch(reason);
  });

  it('a method override is named by its canonical name, never echoed as the agent spelt it', () => {
    const t = parseTarget('/r/v1/x?%5F%48ttp%4Dethod=DELETE');
    expect(t).toBeInstanceOf(BadRequestError);
    expect((t as BadRequestError).message).toMatch(/\("_httpmethod"\)/);
    expect((t as BadRequestError).message).not.toContain('%');
  });
});

describe('routes chosen by Host: refusals name their reason', () => {
  const route = routeFor('https://api.example.com', new HandsOutAnything(undefined), {}, 'api');
  const r = new HostResolver([route]);

  it('no Host header', () => {
    const err = r.resolve(requestOf('GET', '/x', []));
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).message).toMatch(/no Host header/);
  });

  it('a Host no route has (not quoted back)', () => {
    const err = r.resolve(requestOf('GET', '/x', ['Host', 'other.example']));
    expect(err).toBeInstanceOf(NoRouteError);
    expect((err as NoRouteError).message).toMatch(/no route for this Host/);
    expect((err as NoRouteError).message).not.toContain('other.example');
  });
});
