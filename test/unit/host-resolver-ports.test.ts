import { describe, expect, it } from 'vitest';
import { NoRouteError } from '../../src/core/errors.js';
import { HostResolver } from '../../src/sidecar/proxy/resolve.js';
import { HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';

/**
 * Routes chosen by Host (resolve.ts HostResolver): the scheme's default port may be
 * written after any host name, however short (`a:80` is `a`), and only that port.
 */
const provider = new HandsOutAnything(undefined);

describe('HostResolver: the default port after a short host name', () => {
  const a = routeFor('http://a', provider, {}, 'a');
  const b = routeFor('https://b', provider, {}, 'b');
  const r = new HostResolver([a, b]);
  const routeOf = (host: string) => {
    const got = r.resolve(requestOf('GET', '/x', ['Host', host]));
    return got instanceof Error ? got : got.route;
  };

  it('`a:80` and `A:80` name the http route on host a; `b:443` the https route on b', () => {
    expect(routeOf('a')).toBe(a);
    expect(routeOf('a:80')).toBe(a);
    expect(routeOf('A:80')).toBe(a);
    expect(routeOf('b:443')).toBe(b);
  });

  it('any other port is another origin: no route', () => {
    expect(routeOf('a:443')).toBeInstanceOf(NoRouteError);
    expect(routeOf('b:80')).toBeInstanceOf(NoRouteError);
    expect(routeOf('a:8080')).toBeInstanceOf(NoRouteError);
    expect(routeOf(':80')).toBeInstanceOf(NoRouteError);
  });
});
