import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { PassEnv } from '../../src/sidecar/proxy/passes.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { closedPort, parseResponses, rawRequest } from '../helpers/security-net.js';

/**
 * leash's own refusals as an agent reads them off the wire. An upgrade request (WebSocket)
 * and a CONNECT have no ServerResponse: leash writes the answer raw on the socket
 * (respond.ts sendSocketError), so its status line, with the standard reason phrase of
 * each status leash answers, and its `connection: close` are leash's to get right; the
 * connection is then closed by leash. A refusal on an ordinary request that says nothing
 * against the connection (an unreachable upstream: 502) keeps the agent's keep-alive
 * connection usable for its next request. A CONNECT is answered but, unlike the refused
 * upgrades, not recorded as a request (docs/observability.md: not counted).
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-raw-refusals-test-credential-0123456789';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-raw', acquiredAtMs: 0, expiresAtMs: Number.MAX_SAFE_INTEGER, lease: 'L-raw' });

let held: Upstream;
const heldSockets: Socket[] = [];
let proxy: ProxyServer;
let port: number;
const routes = new Map<string, RouteRuntime>();
const outcomes: RequestOutcome[] = [];

beforeAll(async () => {
  // An upstream that accepts WebSocket upgrades and never answers them.
  held = await startUpstream((_req, res) => res.end('ok'));
  held.server.on('upgrade', (_req, socket: Socket) => heldSockets.push(socket));
  const closed = await closedPort();
  routes.set('ok', routeFor(held.url, new HandsOutAnything(cred()), { allow: ['GET /socket'], timeouts: { connect: '2s', idle: '200ms' } }, 'ok'));
  routes.set('gone', routeFor(`http://127.0.0.1:${closed}`, new HandsOutAnything(cred()), {}, 'gone'));
  routes.set('empty', routeFor(held.url, new HandsOutAnything(undefined), {}, 'empty'));
  const env: PassEnv = { shuttingDown: () => false, route: (n) => routes.get(n), now: () => 1_000 };
  proxy = new ProxyServer(env, { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
  ({ port } = await proxy.listen('127.0.0.1', 0));
});

afterAll(async () => {
  for (const s of heldSockets) s.destroy();
  await proxy?.close(0);
  await held?.close();
  for (const r of routes.values()) r.close();
});

const upgrade = (method: string, path: string) =>
  `${method} ${path} HTTP/1.1\r\nhost: leash\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

describe('a refusal written raw on the socket', () => {
  const cases: Array<[string, () => string, string, string]> = [
    ['CONNECT', () => 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nhost: 127.0.0.1:443\r\n\r\n', 'HTTP/1.1 400 Bad Request', 'leash_bad_request'],
    ['a WebSocket upgrade on POST', () => upgrade('POST', '/ok/socket'), 'HTTP/1.1 400 Bad Request', 'leash_bad_request'],
    ['a WebSocket upgrade to a path the route does not allow', () => upgrade('GET', '/ok/other'), 'HTTP/1.1 403 Forbidden', 'leash_denied'],
    ['a WebSocket upgrade to no route', () => upgrade('GET', '/nowhere/socket'), 'HTTP/1.1 404 Not Found', 'leash_no_route'],
    ['a WebSocket upgrade to an upstream that refuses connections', () => upgrade('GET', '/gone/socket'), 'HTTP/1.1 502 Bad Gateway', 'leash_upstream_unreachable'],
    ['a WebSocket upgrade while no credential is held', () => upgrade('GET', '/empty/socket'), 'HTTP/1.1 503 Service Unavailable', 'leash_credential_unavailable'],
    ['a WebSocket upgrade the upstream never answers (idle 200 ms)', () => upgrade('GET', '/ok/socket'), 'HTTP/1.1 504 Gateway Timeout', 'leash_upstream_timeout'],
  ];
  for (const [what, request, statusLine, type] of cases) {
    it(`${what}: "${statusLine}", connection: close, and leash closes the connection`, async () => {
      const got = await rawRequest(port, request(), { timeoutMs: 3_000 });
      expect(got.raw.split('\r\n')[0]).toBe(statusLine);
      expect(got.responses).toHaveLength(1);
      const answer = got.responses[0]!;
      expect(answer.header('connection')).toBe('close');
      expect(answer.header('x-leash-error')).toBe(type);
      expect((answer.json() as { error: { type: string } }).error.type).toBe(type);
      expect(got.closed).toBe(true);
    });
  }
});

describe('CONNECT', () => {
  it('is answered as unsupported, and recorded as no request (not counted, no audit event)', async () => {
    const before = outcomes.length;
    const got = await rawRequest(port, 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nhost: 127.0.0.1:443\r\n\r\n', { timeoutMs: 3_000 });
    expect(got.responses[0]?.status).toBe(400);
    // docs/configuration.md lists this answer's message.
    expect((got.responses[0]!.json() as { error: { message: string } }).error.message).toBe('CONNECT is not supported: leash is a reverse proxy');
    // A refused WebSocket upgrade on the same listener is recorded: the hook is live.
    await rawRequest(port, upgrade('GET', '/nowhere/socket'), { timeoutMs: 3_000 });
    expect(outcomes.slice(before).map((o) => o.status)).toEqual([404]);
  });
});

describe('a 502 on an ordinary request', () => {
  it('keeps the agent connection: its next request on it is answered', async () => {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    let raw = '';
    const responses = (n: number) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          if (parseResponses(raw).length >= n) resolve(raw);
        };
        const timer = setTimeout(() => reject(new Error(`no ${n} responses in time: ${JSON.stringify(raw)}`)), 3_000);
        socket.on('data', (c: Buffer) => {
          raw += c.toString('latin1');
          check();
          if (parseResponses(raw).length >= n) clearTimeout(timer);
        });
        socket.on('close', () => {
          clearTimeout(timer);
          reject(new Error(`connection closed after ${JSON.stringify(raw)}`));
        });
      });
    const first = responses(1);
    socket.write('GET /gone/a HTTP/1.1\r\nhost: leash\r\n\r\n');
    await first;
    socket.removeAllListeners('data');
    socket.removeAllListeners('close');
    const one = parseResponses(raw)[0]!;
    expect(one.status).toBe(502);
    expect(one.header('connection')).toBe('keep-alive');
    const second = responses(2);
    socket.write('GET /gone/b HTTP/1.1\r\nhost: leash\r\n\r\n');
    await second;
    expect(parseResponses(raw).map((r) => r.status)).toEqual([502, 502]);
    socket.destroy();
  });
});
