import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import type { CredentialProvider, HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { PassEnv, RequestContext } from '../../src/sidecar/proxy/passes.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';

/** Building blocks for tests of the request passes without a sidecar around them. */

/** A credential source that hands out whatever it holds, expiry or not (unlike LeaseCredential). */
export class HandsOutAnything implements CredentialProvider {
  readonly description = 'test:hands-out-anything';
  unavailable = 0;
  constructor(public held: HeldCredential | undefined) {}
  current() {
    return this.held;
  }
  recentValues() {
    return this.held ? [this.held.value] : [];
  }
  async refresh() {}
  onUnavailable() {
    this.unavailable++;
  }
  async start() {}
  async close() {}
}

/** A route named `name` as the config loader builds it (route fields over sensible defaults). */
export function routeFor(
  upstreamUrl: string,
  provider: CredentialProvider,
  over: Record<string, unknown> = {},
  name = 'search',
  options: ConstructorParameters<typeof RouteRuntime>[4] = {},
): RouteRuntime {
  const config = parseConfig(
    sidecarSchema,
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      routes: { [name]: { upstream: upstreamUrl, credential: { env: 'UNUSED' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'], ...over } },
    }),
    { UNUSED: 'x' },
  );
  return new RouteRuntime(name, config.routes[name]!, provider, undefined, options);
}

/** The safety margin is DESIGN §6's own (rotation.ts usable): a test picks it through the credential's TTL. */
export function envFor(route: RouteRuntime, now: () => number, shuttingDown = () => false): PassEnv {
  return { shuttingDown, route: (n) => (n === route.name ? route : undefined), now };
}

/** An IncomingMessage as Node's parser would hand it over (rawHeaders as name, value pairs). */
export function requestOf(method: string, path: string, rawHeaders: string[] = ['Host', '127.0.0.1']): IncomingMessage {
  const req = new IncomingMessage(new Socket());
  req.method = method;
  req.url = path;
  req.rawHeaders = rawHeaders;
  const headers: Record<string, string> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i]!.toLowerCase()] ??= rawHeaders[i + 1]!;
  req.headers = headers;
  return req;
}

export const contextOf = (upgrade = false): RequestContext => ({ startedAt: 0, upgrade, route: undefined, target: undefined, credential: undefined, framing: { kind: 'none' }, upstreamPath: '', outgoingHeaders: {} });
