import { createServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A WebSocket session that outlives several sweeps of the upstream timeouts (timeouts.ts):
 * once the upgrade succeeded the sweeper lets its request go (Node marks it destroyed) and
 * no timeout applies any more — the session is not cut, and when it ends, the request is
 * recorded (metrics, audit) as the 101 it was, not as a 504.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-ws-outcome-test-credential-0123456789';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-ws', acquiredAtMs: 0, expiresAtMs: Number.MAX_SAFE_INTEGER, lease: 'L-ws' });

let upstream: Upstream;
let wss: WebSocketServer;
let route: RouteRuntime;
let proxy: ProxyServer;
let port: number;
const outcomes: RequestOutcome[] = [];

beforeAll(async () => {
  wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws: WebSocket) => ws.on('message', (data) => ws.send(`echo:${data.toString()}`)));
  const server = createServer();
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
  upstream = await startUpstream((_req, res) => res.writeHead(426).end(), server);
  // idle 200 ms: the sweeper runs every 50 ms.
  route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['GET /socket'], timeouts: { connect: '2s', idle: '200ms' } }, 'ws');
  proxy = new ProxyServer(envFor(route, () => 1_000), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
  ({ port } = await proxy.listen('127.0.0.1', 0));
});

afterAll(async () => {
  await proxy?.close(0);
  for (const c of wss?.clients ?? []) c.terminate();
  wss?.close();
  await upstream?.close();
  route?.close();
});

describe('a WebSocket session longer than the upstream timeouts', () => {
  it('is not cut, and is recorded as 101 when it ends', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/socket`);
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(d.toString()));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    // Quiet for three idle timeouts (a dozen sweeps), then still usable.
    await sleep(600);
    ws.send('still-there');
    await waitFor(() => messages.includes('echo:still-there'), { timeoutMs: 2_000, message: 'the echo after the quiet time' });
    expect(outcomes).toEqual([]);
    ws.close();
    const done = await waitFor(() => outcomes[0], { timeoutMs: 2_000, message: 'the session outcome' });
    expect(done.route).toBe('ws');
    expect(done.status).toBe(101);
  });
});
