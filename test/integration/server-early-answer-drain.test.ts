import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { parseResponses } from '../helpers/security-net.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * An upstream that answers before reading the request body (an early 401 or 413): the
 * agent gets that answer, and the rest of its body is to be read and dropped by leash so
 * that the agent's connection carries its next request (server.ts handle 'close':
 * `req.resume(); // the rest of the body is read and dropped: the agent's connection
 * stays usable`). test/security/early-answer.test.ts covers a rest of ~100 bytes.
 *
 * SOURCE BUG SUSPECTED (low severity, availability of one agent connection): with a rest
 * larger than a few stream buffers (≥ ~100 KB here) the agent's connection stalls and its
 * next request is never answered. The close handler calls withdrawRequest (which destroys
 * the upstream request) and then req.resume(); but the agent's request is still piped into
 * that upstream request, and when the destroyed request emits 'close' the pipe unpipes and
 * pauses the agent's request again (Readable.pipe's cleanup), so leash stops reading the
 * agent's socket. `req.unpipe()` before `req.resume()` would keep it flowing (checked with
 * plain streams). Remove `.fails` once fixed.
 */
const VALUE = 'sk-early-answer-drain-test-credential-1f6b';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-drain', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-drain' });

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

describe('an answer that comes before the request body has gone out', () => {
  it.fails('leaves the agent connection usable after a large rest of the body (1 MB)', async () => {
    const seen: string[] = [];
    upstream = await startUpstream((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(req.method === 'POST' ? 401 : 200, { 'content-length': '2' });
      res.end('no');
    });
    route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['GET /**', 'POST /**'] });
    const outcomes: RequestOutcome[] = [];
    proxy = new ProxyServer(envFor(route, () => 1_000), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
    const { port } = await proxy.listen('127.0.0.1', 0);
    const sock = connect(port, '127.0.0.1');
    sockets.push(sock);
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => (text += c));
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const size = 1_000_000;
    sock.write(`POST /search/upload HTTP/1.1\r\nhost: leash\r\ncontent-type: application/octet-stream\r\ncontent-length: ${size}\r\n\r\n` + 'x'.repeat(1_000));
    await waitFor(() => parseResponses(text).length === 1, { timeoutMs: 2_000 });
    expect(parseResponses(text)[0]!.status).toBe(401);
    await sleep(50);
    sock.write('x'.repeat(size - 1_000));
    sock.write('GET /search/next HTTP/1.1\r\nhost: leash\r\n\r\n');
    await waitFor(() => parseResponses(text).length === 2, { timeoutMs: 2_000, message: 'the next request on the connection to be answered' });
    expect(parseResponses(text).map((r) => r.status)).toEqual([401, 200]);
    expect(seen).toEqual(['POST /upload', 'GET /next']);
  });
});
