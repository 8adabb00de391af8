import type { IncomingMessage } from 'node:http';
import { connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { STALL_MS } from '../../src/core/loop-stall.js';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { type Agent, ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A WebSocket upgrade read in the poll that ends a loop stall waits one loop turn
 * (server.ts handleUpgrade, loop-stall.ts): a revocation read in that same poll is applied
 * before the upgrade is decided, so the revoked credential is never sent; and an agent
 * that is gone by then is not forwarded at all. The stall is real: the test blocks the
 * loop for longer than STALL_MS after the bytes are in the kernel.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-ws-stall-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-wss', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-wss' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

const UPGRADE = 'GET /ws/socket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

async function setUp() {
  const seen: IncomingMessage[] = [];
  // Only upgrades come: a plain request would get no answer.
  const upstream = await stand.upstream(() => undefined);
  stand.acceptUpgrades(upstream.server, seen);
  const provider = new HandsOutAnything(cred());
  const route = routeFor(upstream.url, provider, { allow: ['GET /socket'], timeouts: { connect: '2s', idle: '5s' } }, 'ws');
  const { port, proxy } = await stand.start(route, { now: () => nowMs });
  return { port, seen, provider, proxy };
}

async function open(port: number): Promise<Agent> {
  const agent = await stand.open(port);
  await sleep(20); // accepted on the proxy's side
  return agent;
}

/** Blocks the event loop, as a stopped or starved process would be. */
function stall(): void {
  const until = performance.now() + STALL_MS + 200;
  while (performance.now() < until);
}

describe('a WebSocket upgrade read right after a loop stall', () => {
  it('a revocation read in the same poll is applied first: the upgrade is refused 503 and the credential never sent', async () => {
    const { port, seen, provider } = await setUp();
    // The revocation channel: a message on it drops the credential (as revocation-handler.ts would).
    const channel = createServer((s) => {
      s.on('error', () => undefined);
      s.on('data', () => (provider.held = undefined));
    });
    const rev = connect(await stand.listen(channel), '127.0.0.1');
    stand.sockets.push(rev);
    await new Promise<void>((r) => rev.once('connect', () => r()));
    const a = await open(port);
    await sleep(20);
    // The upgrade first, the revocation after it; both reach the kernel while the loop is stopped.
    a.sock.write(UPGRADE);
    rev.write('revoke');
    stall();
    await waitFor(() => a.received().includes('\r\n\r\n'), { timeoutMs: 2_000 });
    expect(a.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(a.received()).toContain('leash_credential_unavailable');
    expect(seen).toHaveLength(0);
  });

  it('an agent gone within that poll is never forwarded', async () => {
    const { port, seen, proxy } = await setUp();
    // Runs right after leash's own 'upgrade' listener, in the same turn: the agent is gone by the next.
    proxy.server.on('upgrade', (_req: IncomingMessage, socket: Duplex) => socket.destroy());
    const a = await open(port);
    a.sock.write(UPGRADE);
    stall();
    await sleep(200);
    expect(seen).toHaveLength(0);
  });
});
