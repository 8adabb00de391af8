import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { closedPort } from '../helpers/proxy-util.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * What the agent and the operator see when the upstream fails or answers something leash
 * will not relay (server.ts onProxyError, refuseUpgrade, noteOutcome, onTimeout,
 * cutIfStale): the agent's JSON error names the route; the warn line names the route and
 * the error code (docs/errors.md: "the warn log line names route and error code"), never
 * the upstream's bytes; an agent that left gets no answer and no failure is logged for it.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-upstream-failures-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-uf', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-uf' });

/** A credential source whose held credential stops being sendable on demand (as a revoked lease does). */
class Revocable extends HandsOutAnything {
  sendable = true;
  stillSendable(): boolean {
    return this.sendable;
  }
}

interface Raw {
  server: Server;
  port: number;
  /** Every byte each connection received. */
  received: string[];
}

const stand = new ProxyStand();
let raw: Raw | undefined;
afterEach(async () => {
  await stand.teardown();
  raw = undefined;
});

/** A raw upstream, closed at teardown: `answer` gets the request head and writes what it likes on the socket. */
async function rawUpstream(answer: (socket: Socket, head: string) => void): Promise<Raw> {
  const received: string[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    const i = received.push('') - 1;
    let answered = false;
    socket.on('data', (d: Buffer) => {
      received[i] += d.toString('latin1');
      if (!answered && received[i]!.includes('\r\n\r\n')) {
        answered = true;
        answer(socket, received[i]!);
      }
    });
  });
  return { server, port: await stand.listen(server), received };
}

async function setUp(upstreamUrl: string, provider = new HandsOutAnything(cred()), over: Record<string, unknown> = {}) {
  const route = routeFor(upstreamUrl, provider, { timeouts: { connect: '2s', idle: '2s' }, ...over }, 'api');
  return stand.start(route, { now: () => nowMs, level: 'debug' });
}

/** One request on a raw agent connection; resolves with everything read until the connection closes or `until` holds (or after `ms`). */
async function agentRequest(port: number, bytes: string, until: (got: string) => boolean = () => false, ms = 3_000): Promise<{ got: string; sock: Socket }> {
  const { text, sock } = await stand.exchange(port, bytes, { until, ms });
  return { got: text, sock };
}

const errorOf = (got: string) => (JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4)) as { error: { type: string; route: unknown } }).error;
const GET = 'GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
const whole = (got: string) => got.includes('}}');

describe('upstream failures: the agent is answered with the route, the operator told route and code', () => {
  it('connection refused: 502 leash_upstream_unreachable; warn line with the route and ECONNREFUSED', async () => {
    const { port, lines } = await setUp(`http://127.0.0.1:${await closedPort()}`);
    const { got } = await agentRequest(port, GET, whole);
    expect(got).toMatch(/^HTTP\/1\.1 502 /);
    expect(errorOf(got)).toMatchObject({ type: 'leash_upstream_unreachable', route: 'api' });
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('could not be reached'));
    expect(warn).toMatchObject({ route: 'api', code: 'ECONNREFUSED' });
  });

  it('a silent upstream: 504 leash_upstream_timeout; warn line with the route and LEASH_UPSTREAM_TIMEOUT', async () => {
    raw = await rawUpstream(() => undefined);
    const { port, lines } = await setUp(`http://127.0.0.1:${raw.port}`, undefined, { timeouts: { connect: '2s', idle: '200ms' } });
    const { got } = await agentRequest(port, GET, whole);
    expect(got).toMatch(/^HTTP\/1\.1 504 /);
    expect(errorOf(got)).toMatchObject({ type: 'leash_upstream_timeout', route: 'api' });
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('did not answer in time'));
    expect(warn).toMatchObject({ route: 'api', code: 'LEASH_UPSTREAM_TIMEOUT' });
  });

  it('a credential that stopped being sendable before the head was written: 503, never sent; warn line with LEASH_CREDENTIAL_STALE', async () => {
    raw = await rawUpstream((s) => s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    const provider = new Revocable(cred());
    provider.sendable = false;
    const { port, lines, outcomes } = await setUp(`http://127.0.0.1:${raw.port}`, provider);
    const { got } = await agentRequest(port, GET, whole);
    expect(got).toMatch(/^HTTP\/1\.1 503 /);
    expect(errorOf(got)).toMatchObject({ type: 'leash_credential_unavailable', route: 'api' });
    expect(raw.received.join('')).not.toContain(VALUE);
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('before the upstream answered'));
    expect(warn).toMatchObject({ route: 'api', code: 'LEASH_CREDENTIAL_STALE' });
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(503);
  });

  it('an agent that leaves while the upstream is silent: no answer, outcome 499, no upstream failure logged', async () => {
    raw = await rawUpstream(() => undefined);
    const { port, lines, outcomes } = await setUp(`http://127.0.0.1:${raw.port}`);
    const sock = connect(port, '127.0.0.1');
    stand.sockets.push(sock);
    sock.on('error', () => undefined);
    sock.write(GET);
    await waitFor(() => raw!.received.some((r) => r.includes('\r\n\r\n')));
    sock.destroy();
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(499);
    await sleep(100);
    expect(lines().filter((l) => l.level === 'warn')).toEqual([]);
  });
});

describe('answers leash does not relay', () => {
  it('a 101 to a request that did not ask to upgrade: 502 leash_upstream_bad_response naming the route; warn line with route and code', async () => {
    raw = await rawUpstream((s) => s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n'));
    const { port, lines } = await setUp(`http://127.0.0.1:${raw.port}`);
    const { got } = await agentRequest(port, GET, whole);
    expect(got).toMatch(/^HTTP\/1\.1 502 /);
    expect(errorOf(got)).toMatchObject({ type: 'leash_upstream_bad_response', route: 'api' });
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('(101)'));
    expect(warn).toMatchObject({ route: 'api', code: 'LEASH_ERR_UPSTREAM_BAD_RESPONSE' });
  });

  it('a status outside 200–599: 502; warn line with route and code', async () => {
    raw = await rawUpstream((s) => s.end('HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n'));
    const { port, lines } = await setUp(`http://127.0.0.1:${raw.port}`);
    const { got } = await agentRequest(port, GET, whole);
    expect(got).toMatch(/^HTTP\/1\.1 502 /);
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('cannot be relayed'));
    expect(warn).toMatchObject({ route: 'api', code: 'LEASH_ERR_UPSTREAM_BAD_RESPONSE' });
  });

  it('a header that would echo the credential is dropped; warn line with route and how many were dropped', async () => {
    raw = await rawUpstream((s) => s.end(`HTTP/1.1 200 OK\r\n${VALUE}: 1\r\nx-fine: 1\r\ncontent-length: 2\r\n\r\nok`));
    const { port, lines } = await setUp(`http://127.0.0.1:${raw.port}`);
    const { got } = await agentRequest(port, GET, (g) => g.endsWith('ok'));
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    expect(got).not.toContain(VALUE);
    expect(got.toLowerCase()).toContain('x-fine: 1');
    const warn = lines().find((l) => l.level === 'warn' && String(l.msg).includes('headers dropped'));
    expect(warn).toMatchObject({ route: 'api', dropped: 1 });
  });

  it('a 204 followed by bytes in the same packet: the agent still gets the 204 whole; a debug line names route and parser code', async () => {
    raw = await rawUpstream((s) => s.end('HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\nunexpected body bytes'));
    const { port, lines, outcomes } = await setUp(`http://127.0.0.1:${raw.port}`);
    const { got } = await agentRequest(port, GET, (g) => g.includes('\r\n\r\n'));
    expect(got).toMatch(/^HTTP\/1\.1 204 /);
    expect(got.toLowerCase()).toContain('x-a: 1');
    expect(got).not.toContain('unexpected');
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(204);
    const debug = lines().find((l) => l.level === 'debug' && String(l.msg).includes('after its answer'));
    expect(debug).toMatchObject({ route: 'api' });
    expect(String(debug!.code)).toMatch(/^HPE_/);
    expect(lines().filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('an answer refused for its status, with unparseable bytes behind it: one 502 to the agent and one warn line, not a second failure', async () => {
    raw = await rawUpstream((s) => s.end('HTTP/1.1 999 Odd\r\ntransfer-encoding: chunked\r\n\r\nZZZ\r\n'));
    const { port, lines, outcomes } = await setUp(`http://127.0.0.1:${raw.port}`);
    const { got } = await agentRequest(port, GET, whole);
    expect(got).toMatch(/^HTTP\/1\.1 502 /);
    expect(errorOf(got)).toMatchObject({ type: 'leash_upstream_bad_response', route: 'api' });
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(502);
    await sleep(20);
    expect(lines().filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([expect.stringContaining('cannot be relayed')]);
  });
});
