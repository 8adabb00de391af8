import type { IncomingMessage } from 'node:http';
import { BadRequestError, ConfigError, type LeashHttpError, NoRouteError } from '../../core/errors.js';
import type { RouteRuntime } from './route.js';
import { parseTarget, parseWholePath, type Target } from './target.js';

/**
 * Which route a request is for, and its target as the allow rules see it (the request-head
 * phase, passes.ts resolveRoute). Two ways to choose:
 * - by path prefix (`http://127.0.0.1:8080/<route>/…`, the reverse-proxy mode every agent
 *   uses today): the first segment names the route and is not sent upstream;
 * - by Host (`Host: api.openai.com`, for tools with fixed URLs reaching leash as an
 *   HTTPS_PROXY): the route whose upstream has that host takes the whole path.
 * A resolver also says how the agent addresses an upstream path, so a same-origin redirect
 * brings the agent back through leash (response.ts rewriteLocation).
 */
export interface RouteResolver {
  resolve(req: IncomingMessage): { route: RouteRuntime; target: Target } | LeashHttpError;
  /** The path the agent uses for `rest`, an upstream path after the route's base path (starts with `/`). */
  agentPath(route: RouteRuntime, rest: string): string;
}

/** `/<route>/rest…`: the route named by the first segment. */
export class PrefixResolver implements RouteResolver {
  constructor(private readonly lookup: (name: string) => RouteRuntime | undefined) {}

  resolve(req: IncomingMessage): { route: RouteRuntime; target: Target } | LeashHttpError {
    const target = parseTarget(req.url ?? '');
    if (target instanceof BadRequestError || target instanceof NoRouteError) return target;
    const route = this.lookup(target.route);
    if (!route) return new NoRouteError(`no route named "${target.route}"`);
    return { route, target };
  }

  /**
   * resolve(), written into `into` (the request's context) instead of a new pair per
   * request: the same answer (test/unit/resolve-into.test.ts); `into` is left as it was on an error.
   */
  resolveInto(req: IncomingMessage, into: { route: RouteRuntime | undefined; target: Target | undefined }): LeashHttpError | undefined {
    const target = parseTarget(req.url ?? '');
    if (target instanceof BadRequestError || target instanceof NoRouteError) return target;
    const route = this.lookup(target.route);
    if (!route) return new NoRouteError(`no route named "${target.route}"`);
    into.target = target;
    into.route = route;
    return undefined;
  }

  agentPath(route: RouteRuntime, rest: string): string {
    return `/${route.name}${rest}`;
  }
}

const defaultPort = (route: RouteRuntime): number => (route.target.protocol === 'https:' ? 443 : 80);

/** A route's upstream host as a Host header names it without a port (the default one dropped). */
function hostKey(route: RouteRuntime): string {
  const h = route.hostHeader.toLowerCase();
  const port = `:${defaultPort(route)}`;
  return h.endsWith(port) ? h.slice(0, -port.length) : h;
}

/**
 * The route whose upstream host the request names in `Host`. Every route's upstream host
 * must be distinct (two routes on one host could not be told apart): the constructor
 * refuses otherwise. A Host no route has is `leash_no_route`, never a guess.
 */
export class HostResolver implements RouteResolver {
  private readonly byHost = new Map<string, RouteRuntime>();

  constructor(routes: Iterable<RouteRuntime>) {
    const problems: string[] = [];
    for (const route of routes) {
      const key = hostKey(route);
      const other = this.byHost.get(key);
      if (other) problems.push(`routes.${route.name}: upstream host ${key} is also route "${other.name}"'s; routes chosen by host need distinct hosts`);
      else this.byHost.set(key, route);
    }
    if (problems.length > 0) throw new ConfigError(problems);
  }

  resolve(req: IncomingMessage): { route: RouteRuntime; target: Target } | LeashHttpError {
    const host = req.headers.host;
    if (!host) return new BadRequestError('no Host header: the route is chosen by host');
    const route = this.lookup(host.toLowerCase());
    // The Host is the agent's text: not quoted back (it could be anything the agent was given).
    if (!route) return new NoRouteError('no route for this Host');
    const target = parseWholePath(req.url ?? '');
    if (target instanceof BadRequestError) return target;
    return { route, target: { ...target, route: route.name } };
  }

  /** Exact host first; `host:443`/`host:80` only for a route whose scheme has that default port. */
  private lookup(host: string): RouteRuntime | undefined {
    const exact = this.byHost.get(host);
    if (exact) return exact;
    const colon = host.lastIndexOf(':');
    if (colon === -1) return undefined;
    const route = this.byHost.get(host.slice(0, colon));
    return route && host.slice(colon + 1) === String(defaultPort(route)) ? route : undefined;
  }

  agentPath(_route: RouteRuntime, rest: string): string {
    return rest;
  }
}
