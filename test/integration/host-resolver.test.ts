import { afterEach, describe, expect, it } from 'vitest';
import { HostResolver } from '../../src/sidecar/proxy/resolve.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { rawRequest } from '../helpers/proxy-util.js';

/**
 * A proxy whose routes are chosen by Host (resolve.ts HostResolver), end to end: the agent
 * addresses the upstream's own host and path, leash injects the credential, allow rules
 * see the whole path, and a same-origin redirect is relayed as the upstream's path.
 */
const VALUE = 'sk-host-resolver-test-credential-0123456789';
let upstream: Upstream | undefined;
let proxy: ProxyServer | undefined;
let route: RouteRuntime | undefined;
afterEach(async () => {
  await proxy?.close(0);
  await upstream?.close();
  route?.close();
  proxy = upstream = route = undefined;
});

describe('routes chosen by Host', () => {
  it('forwards the whole path to the route whose upstream the Host names, with the credential', async () => {
    const seen: { url: string; auth: string | undefined; host: string | undefined }[] = [];
    upstream = await startUpstream((req, res) => {
      seen.push({ url: req.url!, auth: req.headers.authorization, host: req.headers.host });
      if (req.url === '/v1/old') {
        res.writeHead(302, { location: `${upstream!.url}/v1/new` });
        return void res.end();
      }
      res.end('ok');
    });
    route = routeFor(upstream.url, new HandsOutAnything({ value: VALUE, fingerprint: 'fp', acquiredAtMs: 0, expiresAtMs: undefined, lease: undefined }), { allow: ['GET /v1/**'] }, 'svc');
    proxy = new ProxyServer(
      { ...envFor(route, () => 0), resolver: new HostResolver([route]) },
      { requestDone: () => undefined, upstreamAuthFailure: () => undefined },
      createLogger({ level: 'silent', destination: new LogSink() }),
    );
    const { port } = await proxy.listen('127.0.0.1', 0);
    const host = `127.0.0.1:${upstream.port}`;

    const ok = await rawRequest(`http://127.0.0.1:${port}/v1/models`, { headers: { host } });
    expect(ok.status).toBe(200);
    expect(seen[0]).toEqual({ url: '/v1/models', auth: `Bearer ${VALUE}`, host });

    // The allow rules match the whole path (no route prefix to strip).
    const denied = await rawRequest(`http://127.0.0.1:${port}/admin`, { headers: { host } });
    expect(denied.status).toBe(403);
    // A Host no route has: no route, never forwarded anywhere.
    const other = await rawRequest(`http://127.0.0.1:${port}/v1/models`, { headers: { host: 'evil.example' } });
    expect(other.status).toBe(404);
    expect(other.headers['x-leash-error']).toBe('leash_no_route');

    const redirect = await rawRequest(`http://127.0.0.1:${port}/v1/old`, { headers: { host } });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.location).toBe('/v1/new');
    expect(seen).toHaveLength(2);
  });
});
