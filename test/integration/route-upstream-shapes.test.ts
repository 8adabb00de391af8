import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest } from '../helpers/proxy-util.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What a route makes of its upstream URL and its pool (route.ts RouteRuntime): an IPv6
 * literal host, a base path with trailing slashes, keep-alive connections shared by the
 * route's requests and closed when the sidecar stops, and the injected header's
 * CGI spelling removed from what the agent sends.
 */
// Made up for this test (no vendor issues keys of this shape).
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-route-shapes-7c3e9a1f5b2d4c6e8a0f';

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  conn: number;
}
interface Up {
  url: string;
  seen: Seen[];
  /** Connections the upstream has accepted, and those that have closed since. */
  opened: number;
  closed: Set<number>;
  close(): Promise<void>;
}

async function upstream(host = '127.0.0.1'): Promise<Up> {
  const sockets = new Map<Socket, number>();
  const closed = new Set<number>();
  const seen: Seen[] = [];
  let next = 0;
  const server: Server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers, rawHeaders: [...req.rawHeaders], conn: sockets.get(req.socket)! });
    // A same-origin redirect inside the route's base path (an upstream at /v1//, below).
    if (req.url?.endsWith('/old')) return void res.writeHead(302, { location: '/v1/new' }).end();
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  // Long enough that only leash can be the one closing a kept-alive connection here.
  server.keepAliveTimeout = 60_000;
  const up: Up = {
    url: '',
    seen,
    get opened() {
      return next;
    },
    closed,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (s: Socket) => {
    const conn = next++;
    sockets.set(s, conn);
    s.on('close', () => closed.add(conn));
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  up.url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return up;
}

let up: Up | undefined;
let leash: RunningSidecar | undefined;
afterEach(async () => {
  await leash?.stop();
  await up?.close();
  leash = up = undefined;
});

async function start(route: Record<string, unknown>): Promise<RunningSidecar> {
  leash = await startSidecar({ routes: { api: route } }, { env: { KEY: SECRET } });
  return leash;
}

describe('a route and its upstream URL', () => {
  it('an IPv6 literal upstream ([::1]) is reached, with the bracketed host in Host', async () => {
    up = await upstream('::1');
    const l = await start(bearerRoute(up.url, ['GET /v1/**']));
    const r = await rawRequest(`${l.url}/api/v1/models`);
    expect(r.status).toBe(200);
    expect(up.seen.map((s) => [s.url, s.headers.host, s.headers.authorization])).toEqual([['/v1/models', up.url.slice('http://'.length), `Bearer ${SECRET}`]]);
  });

  it("trailing slashes of the upstream's base path are dropped: /v1// + /models is /v1/models", async () => {
    up = await upstream();
    const l = await start(bearerRoute(`${up.url}/v1//`, ['GET /**']));
    expect((await rawRequest(`${l.url}/api/models`)).status).toBe(200);
    expect((await rawRequest(`${l.url}/api/`)).status).toBe(200);
    // A redirect inside the base path brings the agent back through its route.
    const moved = await rawRequest(`${l.url}/api/old`);
    expect(moved.status).toBe(302);
    expect(moved.headers.location).toBe('/api/new');
    expect(up.seen.map((s) => s.url)).toEqual(['/v1/models', '/v1/', '/v1/old']);
  });
});

describe("a route's connection pool", () => {
  it("the route's requests share one kept-alive upstream connection", async () => {
    up = await upstream();
    const l = await start(bearerRoute(up.url, ['GET /v1/**']));
    for (let i = 0; i < 3; i++) expect((await rawRequest(`${l.url}/api/v1/models`)).status).toBe(200);
    expect(up.seen.map((s) => s.conn)).toEqual([0, 0, 0]);
    expect(up.opened).toBe(1);
    expect(up.closed.size).toBe(0);
  });

  it('stopping the sidecar closes its idle upstream connections', async () => {
    up = await upstream();
    const l = await start(bearerRoute(up.url, ['GET /v1/**']));
    expect((await rawRequest(`${l.url}/api/v1/models`)).status).toBe(200);
    expect(up.opened).toBe(1);
    await l.stop();
    leash = undefined;
    const u = up;
    await waitFor(() => (u.closed.has(0) ? true : undefined), { timeoutMs: 2_000, intervalMs: 20, message: () => 'the pooled upstream connection to close' });
  });
});

describe('the injected header, as the agent may spell it', () => {
  it("the agent's own value of the injected header is never forwarded, in the '-' or the CGI '_' spelling", async () => {
    up = await upstream();
    const l = await start({ upstream: up.url, credential: { env: 'KEY' }, inject: { header: 'x-vendor-token', format: '{{credential}}' }, allow: ['GET /v1/**'] });
    const r = await rawRequest(`${l.url}/api/v1/models`, { headers: { 'X-Vendor-Token': 'agent-own-key', X_Vendor_Token: 'agent-own-key-cgi' } });
    expect(r.status).toBe(200);
    const s = up.seen[0]!;
    const names = s.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names).not.toContain('x_vendor_token');
    expect(names.filter((n) => n === 'x-vendor-token')).toHaveLength(1);
    expect(s.headers['x-vendor-token']).toBe(SECRET);
    expect(s.rawHeaders.join('\n')).not.toContain('agent-own-key');
  });
});
