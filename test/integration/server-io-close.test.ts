import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { rawRequest } from '../helpers/proxy-util.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * ProxyServer.close(grace) (server.ts): it stops accepting at once, lets a request in
 * flight finish within the grace before it resolves, and is idempotent.
 */
const VALUE = 'sk-close-server-io-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-close', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-close' });

let upstream: Upstream | undefined;
let proxy: ProxyServer | undefined;
let route: RouteRuntime | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await proxy?.close(0);
  await upstream?.close();
  route?.close();
  proxy = upstream = route = undefined;
});

async function setUp(delayMs: number) {
  upstream = await startUpstream((_req, res) => {
    setTimeout(() => res.end('{"ok":true}'), delayMs);
  });
  route = routeFor(upstream.url, new HandsOutAnything(cred()), { timeouts: { connect: '2s', idle: '2s' } }, 'api');
  const outcomes: RequestOutcome[] = [];
  proxy = new ProxyServer(envFor(route, () => nowMs), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
  const { port } = await proxy.listen('127.0.0.1', 0);
  return { port, outcomes };
}

const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    sockets.push(s);
    s.once('error', () => resolve(true));
    s.once('connect', () => resolve(false));
  });

describe('ProxyServer.close', () => {
  it('with nothing in flight: resolves at once and the listener refuses new connections', async () => {
    const { port } = await setUp(0);
    expect(await refused(port)).toBe(false);
    const closing = proxy!.close(5_000);
    expect(closing).toBeInstanceOf(Promise);
    const t0 = performance.now();
    await closing;
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(await refused(port)).toBe(true);
  });

  it('is idempotent: a second call returns the same drain', async () => {
    await setUp(0);
    const first = proxy!.close(5_000);
    expect(proxy!.close(0)).toBe(first);
    await first;
  });

  it('a request in flight is answered in full before close resolves (within the grace)', async () => {
    const { port, outcomes } = await setUp(300);
    const answer = rawRequest(`http://127.0.0.1:${port}/api/x`);
    await waitFor(() => proxy!.inFlight === 1);
    let closed = false;
    const closing = proxy!.close(5_000).then(() => (closed = true));
    await sleep(100);
    expect(closed).toBe(false);
    const r = await answer;
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('{"ok":true}');
    await closing;
    expect(outcomes.map((o) => o.status)).toEqual([200]);
  });
});
