import { createServer, request } from 'node:http';
import type { Duplex } from 'node:stream';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { leasedRoute, leasedSidecar, statusOf } from '../helpers/leased-sidecar.js';
import { stopAfterEach } from '../helpers/teardown.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A revocation ends what is already open with the revoked lease: a request still waiting
 * for its answer gets 503 leash_credential_unavailable, a stream under way and a
 * WebSocket are cut. Before, an SSE stream and a WebSocket opened with the lease kept
 * running after the instance was cut off and past the lease's expiry (the upstream's
 * session outlives the credential that opened it). Exchanges on other credentials, and
 * those with another lease than the one revoked, carry on.
 */
const started = stopAfterEach();
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Sidecar | undefined;

interface Open {
  ws: WebSocket;
  wsClosed: Promise<void>;
  sse: { ended: Promise<'cut' | 'complete'>; events: () => number };
  pending: Promise<number>;
}

async function setup() {
  authority = await startAuthority({
    credentials: { api: { kind: 'jwt', audience: 'api', ttl: '5m' }, other: { kind: 'jwt', audience: 'other', ttl: '5m' } },
    policies: [{ identities: ['join:agent-*'], credentials: ['api', 'other'] }],
  });
  started(authority, (a) => a!.stop());
  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(`echo:${d.toString()}`)));
  const server = createServer();
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
  upstream = await startUpstream((req, res) => {
    if (req.url!.startsWith('/pending')) return void setTimeout(() => res.end('late'), 3_000);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const t = setInterval(() => res.write(`data: ${Date.now()}\n\n`), 100);
    req.on('close', () => clearInterval(t));
  }, server);
  started(upstream, (u) => u!.close());
  const bus = new MemoryRevocationBus();
  const route = (credential: string) => leasedRoute(upstream!.url, credential, { websocket: true });
  const built = await leasedSidecar(authority, { api: route('api'), other: route('other') }, { bus });
  sidecar = built.sidecar;
  started(sidecar, (x) => x!.stop());
  const logs = built.logs;
  const addrs = await sidecar.start();
  const status = () => statusOf(addrs.admin.port);
  await waitFor(async () => Object.values((await status()).routes).every((r) => r.lease !== null), { timeoutMs: 5_000, intervalMs: 20, message: 'leases' });

  const open = async (routeName: string): Promise<Open> => {
    const ws = new WebSocket(`ws://127.0.0.1:${addrs.proxy.port}/${routeName}/ws`);
    ws.on('error', () => undefined);
    const wsClosed = new Promise<void>((r) => ws.once('close', () => r()));
    await new Promise((r) => ws.once('open', r));
    let events = 0;
    const ended = new Promise<'cut' | 'complete'>((resolve) => {
      const req = request({ host: '127.0.0.1', port: addrs.proxy.port, path: `/${routeName}/sse` }, (res) => {
        res.on('data', () => events++);
        res.on('end', () => resolve(res.complete ? 'complete' : 'cut'));
        res.on('error', () => resolve('cut'));
        res.on('aborted', () => resolve('cut'));
      });
      req.on('error', () => resolve('cut'));
      req.end();
    });
    const pending = fetch(`http://127.0.0.1:${addrs.proxy.port}/${routeName}/pending`).then(
      (r) => r.status,
      () => 0,
    );
    await waitFor(() => events > 1, { timeoutMs: 3_000, intervalMs: 10 });
    await sleep(100); // the pending request has reached the upstream
    return { ws, wsClosed, sse: { ended, events: () => events }, pending };
  };
  return { bus, status, open, logs, port: addrs.proxy.port };
}

const settled = <T>(p: Promise<T>, ms: number): Promise<T | 'open'> => Promise.race([p, sleep(ms).then(() => 'open' as const)]);

describe('a revocation ends the open exchanges sent with the revoked lease', () => {
  it('an instance cut-off: the WebSocket and the stream are cut, the waiting request is 503, on every leased route', async () => {
    const { bus, status, open } = await setup();
    const api = await open('api');
    const other = await open('other');
    await bus.publish({ scope: 'instance', target: (await status()).instance.identity, reason: 'pod compromised', by: 'test' });
    for (const o of [api, other]) {
      expect(await settled(o.wsClosed, 2_000)).toBeUndefined();
      expect(await settled(o.sse.ended, 2_000)).toBe('cut');
      expect(await settled(o.pending, 2_000)).toBe(503);
    }
  });

  it('a lease revocation ends that lease\'s exchanges only; another credential\'s carry on', async () => {
    const { bus, status, open } = await setup();
    const api = await open('api');
    const other = await open('other');
    const revoked = (await status()).routes.api!.lease!;
    await bus.publish({ scope: 'lease', target: revoked, reason: 'leaked', by: 'test' });
    expect(await settled(api.wsClosed, 2_000)).toBeUndefined();
    expect(await settled(api.sse.ended, 2_000)).toBe('cut');
    expect(await settled(api.pending, 2_000)).toBe(503);
    // The other route's WebSocket still echoes, its stream still flows.
    const before = other.sse.events();
    const echo = new Promise<string>((r) => other.ws.once('message', (d) => r(d.toString())));
    other.ws.send('still there?');
    expect(await settled(echo, 2_000)).toBe('echo:still there?');
    await sleep(300);
    expect(other.sse.events()).toBeGreaterThan(before);
    other.ws.close();
  });

  it('a credential revocation ends that credential\'s exchanges, and new ones go out with a new lease', async () => {
    const { bus, status, open, port } = await setup();
    const api = await open('api');
    const other = await open('other');
    const revoked = (await status()).routes.api!.lease!;
    await bus.publish({ scope: 'credential', target: 'api', reason: 'upstream key rotated', by: 'test' });
    expect(await settled(api.sse.ended, 2_000)).toBe('cut');
    expect(await settled(api.wsClosed, 2_000)).toBeUndefined();
    expect(await settled(other.wsClosed, 500)).toBe('open');
    await waitFor(async () => {
      const l = (await status()).routes.api!.lease;
      return l !== null && l !== revoked;
    }, { timeoutMs: 5_000, intervalMs: 20 });
    const again = await fetch(`http://127.0.0.1:${port}/api/sse`);
    expect(again.status).toBe(200);
    await again.body?.cancel();
    other.ws.close();
  });
});
