import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * ProxyServer.cutOpen (server.ts), as a revocation calls it (revocation-handler.ts logs the
 * count it returns: "open requests, streams and WebSockets sent with a revoked lease
 * ended"): it names each exchange's route and lease to the rule, ends the ones it matches
 * — a request still waiting gets 503 leash_credential_unavailable, a stream under way is
 * cut, a WebSocket is closed — and returns how many it ended.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-cut-open-server-io-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-cut', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-cut' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

/** /wait never answers; /stream sends its head and a first chunk, then holds; upgrades get a 101 and stay open. */
async function setUp(idle = '5s') {
  const upstream = await stand.upstream((req: IncomingMessage, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
    }
  });
  stand.acceptUpgrades(upstream.server);
  const route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['GET /wait', 'GET /stream', 'GET /socket'], timeouts: { connect: '2s', idle } }, 'api');
  return stand.start(route, { now: () => nowMs, level: 'debug' });
}

const get = (path: string) => `GET /api${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
const UPGRADE = 'GET /api/socket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

describe('cutOpen', () => {
  it('ends a waiting request (503) and a stream under way (cut), and counts two', async () => {
    const { port, outcomes, lines, proxy } = await setUp();
    const waiting = stand.connect(port, get('/wait'));
    const stream = stand.connect(port, get('/stream'));
    await waitFor(() => stream.received().includes('data: first') && proxy.inFlight === 2);
    const asked: Array<[string, string | undefined]> = [];
    const n = proxy.cutOpen((r, lease) => {
      asked.push([r, lease]);
      return lease === 'L-cut';
    });
    expect(n).toBe(2);
    expect(asked).toEqual([
      ['api', 'L-cut'],
      ['api', 'L-cut'],
    ]);
    await waitFor(() => waiting.received().includes('}}'));
    expect(waiting.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(waiting.received()).toContain('leash_credential_unavailable');
    // The stream had started: it is cut, not answered again.
    await stream.closed;
    expect(stream.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(stream.received()).not.toContain('leash_');
    await waitFor(() => outcomes.length === 2);
    // Only the request still waiting is reported as refused for its credential.
    const stale = lines().filter((l) => l.level === 'warn' && String(l.msg).includes('before the upstream answered'));
    expect(stale).toHaveLength(1);
  });

  it('a rule that matches nothing ends nothing and counts zero', async () => {
    const { port, proxy } = await setUp();
    const ws = stand.connect(port, UPGRADE);
    const waiting = stand.connect(port, get('/wait'));
    await waitFor(() => ws.received().includes('\r\n\r\n') && proxy.inFlight === 2);
    expect(proxy.cutOpen(() => false)).toBe(0);
    expect(waiting.sock.destroyed).toBe(false);
    expect(ws.sock.destroyed).toBe(false);
    expect(proxy.inFlight).toBe(2);
  });

  it('an open WebSocket: closed, counts one', async () => {
    const { port, proxy } = await setUp('400ms');
    const ws = stand.connect(port, UPGRADE);
    await waitFor(() => ws.received().includes('\r\n\r\n'));
    await sleep(300); // the upgrade request's timeout entry is swept once it is upgraded (100 ms period)
    expect(proxy.cutOpen(() => true)).toBe(1);
    await ws.closed;
  });

  // Found in the twentieth session, fixed since (the count feeds the revocation warn line):
  // right after its upgrade a WebSocket is still in the upstream timeouts (its request is
  // dropped at the next sweep, up to 1 s later), and cutOpen counted it twice.
  it('a WebSocket just upgraded counts once', async () => {
    const { port, proxy } = await setUp();
    const ws = stand.connect(port, UPGRADE);
    await waitFor(() => ws.received().includes('\r\n\r\n'));
    expect(proxy.cutOpen(() => true)).toBe(1);
  });

  it('a WebSocket refused after its route was resolved (no credential taken) is skipped or ended, never throws', async () => {
    const { port, proxy } = await setUp();
    const errors: unknown[] = [];
    let stop = false;
    // A revocation may land in any loop turn: one in each, while the refusal is written and the socket closes.
    const tick = () => {
      try {
        proxy.cutOpen(() => true);
      } catch (err) {
        errors.push(err);
      }
      if (!stop) setImmediate(tick);
    };
    setImmediate(tick);
    const ws = stand.connect(port, UPGRADE.replace('/api/socket', '/api/denied'));
    await ws.closed;
    stop = true;
    expect(ws.received()).toMatch(/^HTTP\/1\.1 403 /);
    expect(errors).toEqual([]);
  });
});
