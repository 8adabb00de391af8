import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A request read in the poll that ends a stall of the event loop (the process stopped or
 * starved) waits one loop turn before DECIDE (loop-stall.ts, server.ts handle): a
 * revocation that reached leash's socket while the loop was away is applied first, the
 * request is still answered afterwards,.
 * The stall here is real: the test blocks the loop longer than STALL_MS.
 */
// Made up for this test (no vendor issues keys of this shape).
const VALUE = 'sk-loop-stall-test-credential-5d2c81f0';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-stall', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-stall' });

/** Blocks the event loop (a stall as loop-stall.ts sees one: no beat for longer than STALL_MS). */
const stallLoop = (ms: number): void => {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* the loop is away */
  }
};

let upstream: Upstream | undefined;
let proxy: ProxyServer | undefined;
let route: RouteRuntime | undefined;
let side: Server | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await proxy?.close(0);
  await upstream?.close();
  route?.close();
  await new Promise<void>((r) => (side ? side.close(() => r()) : r()));
  proxy = upstream = route = side = undefined;
});

async function setUp() {
  const seen: { url: string; authorization: string | undefined }[] = [];
  upstream = await startUpstream((req, res) => {
    seen.push({ url: req.url!, authorization: req.headers.authorization });
    res.end('{"ok":true}');
  });
  const provider = new HandsOutAnything(cred());
  route = routeFor(upstream.url, provider);
  const outcomes: RequestOutcome[] = [];
  proxy = new ProxyServer(envFor(route, () => nowMs), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
  const { port } = await proxy.listen('127.0.0.1', 0);
  return { seen, outcomes, port, provider };
}

function open(port: number): Promise<{ sock: Socket; received: () => string }> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sockets.push(sock);
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => (text += c));
    sock.on('error', () => undefined);
    sock.once('connect', () => resolve({ sock, received: () => text }));
  });
}

describe('a request read when the event loop comes back from a stall', () => {
  it('is decided after a revocation that arrived before it in the same stall: refused, nothing sent upstream', async () => {
    const { seen, port, provider, outcomes } = await setUp();
    // The revocation's channel: a socket whose message takes the credential away (as the bus does).
    side = createServer((s) => s.on('data', () => (provider.held = undefined)));
    await new Promise<void>((r) => side!.listen(0, '127.0.0.1', () => r()));
    const revoker = connect((side.address() as { port: number }).port, '127.0.0.1');
    sockets.push(revoker);
    await new Promise<void>((r) => revoker.once('connect', () => r()));
    const agent = await open(port);
    await sleep(50);
    // While the loop is away: the agent's request first, then the revocation.
    agent.sock.write('GET /search/q HTTP/1.1\r\nhost: leash\r\n\r\n');
    stallLoop(5); // let the kernel deliver the agent's bytes before the revocation's
    revoker.write('revoke');
    stallLoop(800);
    await waitFor(() => outcomes.length === 1 && /\}$/.test(agent.received()), { timeoutMs: 3_000 });
    expect(agent.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(agent.received()).toContain('leash_credential_unavailable');
    expect(seen).toHaveLength(0);
    expect(outcomes[0]!.status).toBe(503);
  });

  it('is still answered once the loop is back', async () => {
    const { seen, port, outcomes } = await setUp();
    const agent = await open(port);
    await sleep(50);
    agent.sock.write('GET /search/after-stall HTTP/1.1\r\nhost: leash\r\n\r\n');
    stallLoop(800);
    await waitFor(() => outcomes.length === 1 && /\}$/.test(agent.received()), { timeoutMs: 3_000 });
    expect(agent.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(seen).toEqual([{ url: '/after-stall', authorization: `Bearer ${VALUE}` }]);
  });
});
