import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { rawRequest } from '../helpers/proxy-util.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * ProxyServer.close(grace) (server.ts): it stops accepting at once, lets a request in
 * flight finish within the grace before it resolves, and is idempotent.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-close-server-io-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-close', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-close' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp(delayMs: number) {
  const upstream = await stand.upstream((_req, res) => {
    setTimeout(() => res.end('{"ok":true}'), delayMs);
  });
  const route = routeFor(upstream.url, new HandsOutAnything(cred()), { timeouts: { connect: '2s', idle: '2s' } }, 'api');
  return stand.start(route, { now: () => nowMs });
}

const refused = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    stand.sockets.push(s);
    s.once('error', () => resolve(true));
    s.once('connect', () => resolve(false));
  });

describe('ProxyServer.close', () => {
  it('with nothing in flight: resolves at once and the listener refuses new connections', async () => {
    const { port, proxy } = await setUp(0);
    expect(await refused(port)).toBe(false);
    const closing = proxy.close(5_000);
    expect(closing).toBeInstanceOf(Promise);
    const t0 = performance.now();
    await closing;
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(await refused(port)).toBe(true);
  });

  it('is idempotent: a second call returns the same drain', async () => {
    const { proxy } = await setUp(0);
    const first = proxy.close(5_000);
    expect(proxy.close(0)).toBe(first);
    await first;
  });

  it('a request in flight is answered in full before close resolves (within the grace)', async () => {
    const { port, outcomes, proxy } = await setUp(300);
    const answer = rawRequest(`http://127.0.0.1:${port}/api/x`);
    await waitFor(() => proxy.inFlight === 1);
    let closed = false;
    const closing = proxy.close(5_000).then(() => (closed = true));
    await sleep(100);
    expect(closed).toBe(false);
    const r = await answer;
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('{"ok":true}');
    await closing;
    expect(outcomes.map((o) => o.status)).toEqual([200]);
  });
});
