import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { DeniedError } from '../../src/core/errors.js';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RequestBodyFilter } from '../../src/sidecar/proxy/request-body.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { rawRequest } from '../helpers/proxy-util.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * The request-body phase (src/sidecar/proxy/request-body.ts), through a real proxy and a
 * real upstream: a route with body filters forwards only bodies every filter accepted,
 * framed by leash with their length; refuses what it cannot read whole (too large, stalled,
 * a filter that throws); takes the credential after the body (fail closed); and a route
 * without filters still streams bodies unbuffered.
 */
const VALUE = 'sk-body-phase-test-credential-0123456789';
let nowMs = 1_000_000;
const cred = (expiresInMs = 3_600_000): HeldCredential => ({ value: VALUE, fingerprint: 'fp-body', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + expiresInMs, lease: 'L-body' });

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** ms from the request's head to its first body byte at the upstream. */
  firstByteMs: number | undefined;
}

/** A JSON-RPC policy as an MCP-aware route would have: `tools/call` only for listed tools. */
const toolPolicy = (allowed: string[], maxBytes = 4_096): RequestBodyFilter => ({
  name: 'mcp-tools',
  maxBytes,
  end(body) {
    let msg: { method?: string; params?: { name?: string } };
    try {
      msg = JSON.parse(body.toString('utf8')) as typeof msg;
    } catch {
      return new DeniedError('the body is not JSON-RPC');
    }
    if (msg.method === 'tools/call' && !allowed.includes(msg.params?.name ?? '')) return new DeniedError(`tool ${msg.params?.name} is not allowed`);
    return undefined;
  },
});

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

async function setUp(filters: RequestBodyFilter[], provider = new HandsOutAnything(cred()), over: Record<string, unknown> = {}) {
  const seen: Seen[] = [];
  upstream = await startUpstream((req, res) => {
    const t0 = performance.now();
    const s: Seen = { method: req.method!, url: req.url!, headers: req.headers, body: '', firstByteMs: undefined };
    seen.push(s);
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      s.firstByteMs ??= performance.now() - t0;
      s.body += c;
    });
    req.on('end', () => res.end('{"ok":true}'));
  });
  route = routeFor(upstream.url, provider, { allow: ['POST /mcp', 'POST /upload'], timeouts: { connect: '2s', idle: '400ms' }, ...over }, 'tools', { bodyFilters: filters });
  const outcomes: RequestOutcome[] = [];
  proxy = new ProxyServer(envFor(route, () => nowMs), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
  const { port } = await proxy.listen('127.0.0.1', 0);
  return { seen, outcomes, port, provider };
}

/** A raw agent connection: what it is sent, and everything it reads back. */
function agent(port: number): Promise<{ sock: Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sockets.push(sock);
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => (text += c));
    sock.on('error', () => undefined);
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.once('connect', () => resolve({ sock, received: () => text, closed }));
  });
}

const call = (name: string) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: {} } });

describe('request-body phase', () => {
  it('forwards an accepted body byte for byte, framed by its length, with the credential', async () => {
    const { seen, port } = await setUp([toolPolicy(['search'])]);
    const body = call('search');
    const r = await rawRequest(`http://127.0.0.1:${port}/tools/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(r.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.body).toBe(body);
    expect(seen[0]!.headers['content-length']).toBe(String(Buffer.byteLength(body)));
    expect(seen[0]!.headers['transfer-encoding']).toBeUndefined();
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${VALUE}`);
  });

  it('refuses a body a filter refuses: 403 leash_denied, nothing reaches the upstream', async () => {
    const { seen, port, outcomes } = await setUp([toolPolicy(['search'])]);
    const r = await rawRequest(`http://127.0.0.1:${port}/tools/mcp`, { method: 'POST', body: call('delete_repository') });
    expect(r.status).toBe(403);
    expect(r.headers['x-leash-error']).toBe('leash_denied');
    expect(r.body.toString()).toContain('delete_repository is not allowed');
    expect(r.body.toString()).not.toContain(VALUE);
    expect(seen).toHaveLength(0);
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.denied?.type).toBe('leash_denied');
  });

  it('a chunked body is read whole and sent with a content-length (never chunked through)', async () => {
    const { seen, port } = await setUp([toolPolicy(['search'])]);
    const body = call('search');
    const a = await agent(port);
    const half = Math.floor(body.length / 2);
    a.sock.write(`POST /tools/mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${half.toString(16)}\r\n${body.slice(0, half)}\r\n`);
    await sleep(50);
    expect(seen).toHaveLength(0); // not forwarded before the filters have the whole body
    const rest = body.slice(half);
    a.sock.write(`${rest.length.toString(16)}\r\n${rest}\r\n0\r\n\r\n`);
    await waitFor(() => a.received().includes('{"ok":true}'));
    expect(seen[0]!.body).toBe(body);
    expect(seen[0]!.headers['content-length']).toBe(String(body.length));
    expect(seen[0]!.headers['transfer-encoding']).toBeUndefined();
  });

  it('refuses a body larger than the filters read, before reading it all, and closes the connection', async () => {
    const { seen, port } = await setUp([toolPolicy(['search'], 1_024)]);
    const a = await agent(port);
    a.sock.write(`POST /tools/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(2_000)}`);
    await waitFor(() => a.received().includes('\r\n\r\n'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 403 /);
    expect(a.received()).toContain('larger than this route inspects (1024 bytes)');
    expect(a.received().toLowerCase()).toContain('connection: close');
    await a.closed;
    expect(seen).toHaveLength(0);
  });

  it('a filter refuses from a chunk, as it streams, without waiting for the end', async () => {
    const early: RequestBodyFilter = {
      name: 'no-marker',
      maxBytes: 1 << 20,
      chunk: (c) => (c.includes('FORBIDDEN') ? new DeniedError('marker seen') : undefined),
      end: () => undefined,
    };
    const { seen, port } = await setUp([early]);
    const a = await agent(port);
    a.sock.write(`POST /tools/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\nstart FORBIDDEN `);
    await waitFor(() => a.received().includes('marker seen'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 403 /);
    expect(seen).toHaveLength(0);
  });

  it('a body that stops arriving is refused after the idle timeout; nothing is forwarded', async () => {
    const { seen, port } = await setUp([toolPolicy(['search'])]);
    const a = await agent(port);
    a.sock.write(`POST /tools/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`);
    await waitFor(() => a.received().includes('stopped arriving'), { timeoutMs: 3_000 });
    expect(a.received()).toMatch(/^HTTP\/1\.1 400 /);
    expect(seen).toHaveLength(0);
  });

  it('an agent that leaves mid-body: nothing is forwarded, the outcome is 499', async () => {
    const { seen, port, outcomes } = await setUp([toolPolicy(['search'])]);
    const a = await agent(port);
    a.sock.write(`POST /tools/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`);
    await sleep(50);
    a.sock.destroy();
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(499);
    await sleep(50);
    expect(seen).toHaveLength(0);
  });

  it('a filter that throws refuses the request (fail closed) and the proxy keeps serving', async () => {
    const throwing: RequestBodyFilter = {
      name: 'broken',
      maxBytes: 4_096,
      end: () => {
        throw new Error(`bug quoting the body ${VALUE}`);
      },
    };
    const { seen, port } = await setUp([throwing]);
    const r = await rawRequest(`http://127.0.0.1:${port}/tools/mcp`, { method: 'POST', body: '{}' });
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain('could not be inspected');
    expect(r.body.toString()).not.toContain(VALUE);
    expect((await rawRequest(`http://127.0.0.1:${port}/tools/mcp`, { method: 'POST', body: '{}' })).status).toBe(403);
    expect(seen).toHaveLength(0);
  });

  it('a filter whose verdict never comes refuses the request after the idle timeout (the connection is not held)', async () => {
    const silent: RequestBodyFilter = { name: 'never-answers', maxBytes: 4_096, end: () => new Promise<undefined>(() => undefined) };
    const { seen, port } = await setUp([silent]);
    const t0 = performance.now();
    const r = await rawRequest(`http://127.0.0.1:${port}/tools/mcp`, { method: 'POST', body: '{}', timeoutMs: 5_000 });
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain('could not be inspected');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(390);
    expect(seen).toHaveLength(0);
  });

  it('the credential is taken after the body: one that expired while the body arrived is never sent', async () => {
    const provider = new HandsOutAnything(cred(10_000));
    const { seen, port } = await setUp([toolPolicy(['search'])], provider);
    const body = call('search');
    const a = await agent(port);
    a.sock.write(`POST /tools/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
    await sleep(50);
    nowMs += 60_000; // the credential expires while the agent is still sending
    a.sock.write(body.slice(5));
    await waitFor(() => a.received().includes('\r\n\r\n'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 503 /);
    expect(seen).toHaveLength(0);
  });

  it('without filters a body streams: the upstream has its first bytes before the agent has sent the rest', async () => {
    const { seen, port } = await setUp([]);
    const a = await agent(port);
    a.sock.write(`POST /tools/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello`);
    await waitFor(() => seen[0]?.body === 'hello');
    a.sock.write('world');
    await waitFor(() => a.received().includes('{"ok":true}'));
    expect(seen[0]!.body).toBe('helloworld');
  });
});
