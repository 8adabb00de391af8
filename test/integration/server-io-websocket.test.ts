import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RequestBodyFilter } from '../../src/sidecar/proxy/request-body.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { closedPort } from '../helpers/proxy-util.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * The WebSocket path of the proxy server (server.ts handleUpgrade, proceedUpgrade,
 * onProxyReqWs), in-process with a raw agent and an upstream writing exact bytes: the
 * upgrade goes out through SEND on every route (body filters or not), refused handshakes
 * are scrubbed, counted as auth failures only for 401/403 and reported with leash's own
 * status, dropped 101 headers are logged, and an agent socket that resets never takes the
 * process down.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-ws-server-io-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-ws', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-ws' });
const acceptAll: RequestBodyFilter = { name: 'accept-all', maxBytes: 4_096, end: () => undefined };

interface Up {
  server: Server;
  port: number;
  seen: IncomingMessage[];
  sockets: Duplex[];
  /** Per upstream socket: the leash side ended or closed it. */
  gone: boolean[];
}

const stand = new ProxyStand();
let up: Up | undefined;
afterEach(async () => {
  for (const s of up?.sockets ?? []) s.destroy();
  await stand.teardown();
  up = undefined;
});

/** An upstream whose 'upgrade' listener records the request and writes `answer` (or nothing); closed at teardown. */
async function upstreamWs(answer: (() => string) | undefined): Promise<Up> {
  const server = createServer((_req, res) => res.end('not an upgrade'));
  const seen: IncomingMessage[] = [];
  const sockets: Duplex[] = [];
  const gone: boolean[] = [];
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    const i = gone.push(false) - 1;
    socket.once('end', () => (gone[i] = true));
    socket.once('close', () => (gone[i] = true));
    seen.push(req);
    sockets.push(socket);
    if (answer) socket.write(answer());
  });
  return { server, port: await stand.listen(server), seen, sockets, gone };
}

const SWITCH = 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: x\r\n';

/** A credential source whose credential stops being sendable on demand (as a revoked lease does). */
class Revocable extends HandsOutAnything {
  sendable = true;
  stillSendable(): boolean {
    return this.sendable;
  }
}

async function setUp(answer: (() => string) | undefined, options: { bodyFilters?: RequestBodyFilter[]; provider?: HandsOutAnything; upstreamUrl?: string } = {}) {
  up = await upstreamWs(answer);
  const route = routeFor(options.upstreamUrl ?? `http://127.0.0.1:${up.port}`, options.provider ?? new HandsOutAnything(cred()), { allow: ['GET /socket'], timeouts: { connect: '2s', idle: '2s' } }, 'ws', { bodyFilters: options.bodyFilters ?? [] });
  return stand.start(route, { now: () => nowMs, level: 'debug' });
}

const UPGRADE =
  'GET /ws/socket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer agent-own-token\r\n\r\n';

describe('the upgrade request', () => {
  it('on a route with body filters still goes through SEND: the injected credential, never the agent’s own', async () => {
    const { port } = await setUp(() => `${SWITCH}\r\n`, { bodyFilters: [acceptAll] });
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 101 /);
    expect(up!.seen).toHaveLength(1);
    expect(up!.seen[0]!.url).toBe('/socket');
    expect(up!.seen[0]!.headers.authorization).toBe(`Bearer ${VALUE}`);
  });
});

describe('the upstream’s answer to the handshake', () => {
  it('a 101 carrying a header named by the credential: the header is dropped and a warn line names the route and the count', async () => {
    const { port, lines } = await setUp(() => `${SWITCH}${VALUE}: 1\r\n\r\n`);
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 101 /);
    expect(a.received()).not.toContain(VALUE);
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('headers dropped'));
    expect(warn).toMatchObject({ route: 'ws', dropped: 1 });
  });

  it('a clean 101: nothing is logged as dropped', async () => {
    const { port, lines } = await setUp(() => `${SWITCH}\r\n`);
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 101 /);
    await sleep(20);
    expect(lines().filter((l) => String(l.msg).includes('headers dropped'))).toEqual([]);
  });

  for (const status of [401, 403]) {
    it(`a ${status} refusal counts as an upstream auth failure of that status`, async () => {
      const { port, authFailures, outcomes } = await setUp(() => `HTTP/1.1 ${status} No\r\ncontent-length: 2\r\n\r\nno`);
      const a = await stand.open(port);
      a.sock.write(UPGRADE);
      await a.closed;
      expect(a.received()).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(authFailures).toEqual([status]);
      await waitFor(() => outcomes.length === 1);
      expect(outcomes[0]!.status).toBe(status);
    });
  }

  it('a 404 refusal is relayed and is not an auth failure', async () => {
    const { port, authFailures, outcomes } = await setUp(() => 'HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno');
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 404 /);
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(404);
    expect(authFailures).toEqual([]);
  });

  it('a refusal with a status leash does not relay: the agent gets 502 and the outcome is 502, not the upstream’s status', async () => {
    const { port, outcomes, lines } = await setUp(() => 'HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n');
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 502 /);
    expect(a.received()).toContain('leash_upstream_bad_response');
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(502);
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('cannot be relayed'));
    expect(warn).toMatchObject({ route: 'ws', code: 'LEASH_ERR_UPSTREAM_BAD_RESPONSE' });
  });
});

describe('sockets', () => {
  it('an agent socket reset while the upstream has not answered: the process lives, the upstream request ends, the proxy keeps serving', async () => {
    const { port, outcomes } = await setUp(undefined);
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => up!.seen.length === 1);
    a.sock.resetAndDestroy();
    await waitFor(() => outcomes.length === 1);
    await waitFor(() => up!.gone[0] === true);
    const b = await stand.open(port);
    b.sock.write(UPGRADE);
    await waitFor(() => up!.seen.length === 2);
  });

  it('after the upgrade: the agent going closes the upstream socket, and the upstream going closes the agent', async () => {
    const { port } = await setUp(() => `${SWITCH}\r\n`);
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    a.sock.destroy();
    await waitFor(() => up!.gone[0] === true);
    const b = await stand.open(port);
    b.sock.write(UPGRADE);
    await waitFor(() => b.received().includes('\r\n\r\n'));
    up!.sockets[1]!.destroy();
    await b.closed;
  });

  it('after the upgrade, an agent that goes: leash closes its upstream socket too (an upstream writing on gets a reset)', async () => {
    const { port } = await setUp(() => `${SWITCH}\r\n`);
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    a.sock.destroy();
    await waitFor(() => up!.gone[0] === true);
    const s = up!.sockets[0]!;
    let closed = false;
    s.once('close', () => (closed = true));
    // The upstream keeps its half open and writes on: a socket leash still held would take it.
    for (let i = 0; i < 40 && !closed; i++) {
      s.write('x');
      await sleep(25);
    }
    expect(closed).toBe(true);
  });

  it('after the upgrade, an upstream that goes: leash closes the agent connection and frees its listener slot', async () => {
    const { port, proxy } = await setUp(() => `${SWITCH}\r\n`);
    const sock = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    stand.sockets.push(sock);
    sock.on('error', () => undefined);
    let text = '';
    sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
    sock.write(UPGRADE);
    await waitFor(() => text.includes('\r\n\r\n'));
    up!.sockets[0]!.destroy();
    // The agent keeps its own half open: only leash closing the connection frees the slot.
    await waitFor(async () => (await new Promise<number>((r) => proxy.server.getConnections((_e, n) => r(n)))) === 0, { timeoutMs: 2_000 });
  });

  it('after the upgrade, an upstream connection reset ends the agent connection with nothing written after the 101', async () => {
    const { port } = await setUp(() => `${SWITCH}\r\n`);
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    const head = a.received();
    (up!.sockets[0] as Socket).resetAndDestroy();
    await a.closed;
    expect(a.received()).toBe(head);
  });
});

describe('the upgrade request that cannot go out', () => {
  it('a credential no longer sendable when the upstream connection is assigned: 503, the upgrade never sent', async () => {
    const provider = new Revocable(cred());
    provider.sendable = false;
    const { port, outcomes } = await setUp(() => `${SWITCH}\r\n`, { provider });
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(a.received()).toContain('leash_credential_unavailable');
    expect(up!.seen).toHaveLength(0);
    await waitFor(() => outcomes.length === 1);
  });

  it('an upstream that refuses the connection: 502 to the agent; a warn line names the route and the code', async () => {
    const { port, lines } = await setUp(undefined, { upstreamUrl: `http://127.0.0.1:${await closedPort()}` });
    const a = await stand.open(port);
    a.sock.write(UPGRADE);
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 502 /);
    expect(a.received()).toContain('leash_upstream_unreachable');
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('websocket upstream failed'));
    expect(warn).toMatchObject({ route: 'ws', code: 'ECONNREFUSED' });
  });

  it('a WebSocket upgrade that is not a GET: 400 leash_bad_request with a message, never sent', async () => {
    const { port } = await setUp(() => `${SWITCH}\r\n`);
    const a = await stand.open(port);
    a.sock.write(UPGRADE.replace('GET ', 'POST '));
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 400 /);
    const err = (JSON.parse(a.received().slice(a.received().indexOf('\r\n\r\n') + 4)) as { error: { type: string; message: string } }).error;
    expect(err.type).toBe('leash_bad_request');
    expect(err.message).not.toBe('');
    expect(up!.seen).toHaveLength(0);
  });
});
