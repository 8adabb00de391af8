import { connect, createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A request read in the poll that ends a stall of the event loop (the process stopped or
 * starved) waits one loop turn before DECIDE (loop-stall.ts, server.ts handle): a
 * revocation that reached leash's socket while the loop was away is applied first, the
 * request is still answered afterwards,.
 * The stall here is real: the test blocks the loop longer than STALL_MS.
 */
// Made up for this test (no vendor issues keys of this shape).
// A fake credential made up for this test: not a real key.
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

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp() {
  const seen: { url: string; authorization: string | undefined }[] = [];
  const upstream = await stand.upstream((req, res) => {
    seen.push({ url: req.url!, authorization: req.headers.authorization });
    res.end('{"ok":true}');
  });
  const provider = new HandsOutAnything(cred());
  const route = routeFor(upstream.url, provider);
  const { outcomes, port } = await stand.start(route, { now: () => nowMs });
  return { seen, outcomes, port, provider };
}

describe('a request read when the event loop comes back from a stall', () => {
  it('is decided after a revocation that arrived before it in the same stall: refused, nothing sent upstream', async () => {
    const { seen, port, provider, outcomes } = await setUp();
    // The revocation's channel: a socket whose message takes the credential away (as the bus does).
    const side = createServer((s) => s.on('data', () => (provider.held = undefined)));
    const revoker = connect(await stand.listen(side), '127.0.0.1');
    stand.sockets.push(revoker);
    await new Promise<void>((r) => revoker.once('connect', () => r()));
    const agent = await stand.open(port);
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
    const agent = await stand.open(port);
    await sleep(50);
    agent.sock.write('GET /search/after-stall HTTP/1.1\r\nhost: leash\r\n\r\n');
    stallLoop(800);
    await waitFor(() => outcomes.length === 1 && /\}$/.test(agent.received()), { timeoutMs: 3_000 });
    expect(agent.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(seen).toEqual([{ url: '/after-stall', authorization: `Bearer ${VALUE}` }]);
  });
});
