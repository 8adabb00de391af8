import { createServer, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { rawRequest, sleep } from '../helpers/security-net.js';

/**
 * Node parses at most 2000 request header lines into `req.headers` (`maxHeadersCount`),
 * while llhttp frames the message by every line it read and `req.rawHeaders` keeps them
 * all. A `Transfer-Encoding` or `Content-Length` line past the 2000th was invisible to
 * leash's framing decision: the body of a GET, DELETE, OPTIONS or HEAD went upstream
 * unframed on a pooled connection, and leash's next request there completed the request
 * the body held, with the credential. Every method × both framings, and the limit itself.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-header-count-5c1d0e9f2b7a4438';
const smuggled = 'DELETE /v1/forbidden HTTP/1.1\r\nhost: up\r\nx-swallow: ';
const FRAMINGS = {
  chunked: `transfer-encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
  'content-length': `content-length: ${smuggled.length}\r\n\r\n${smuggled}`,
};

let up: Upstream;
const seen: string[] = [];
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = await startUpstream((req: IncomingMessage, res) => {
    req.resume();
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
      res.end('ok');
    });
  }, createServer());
  // One pooled socket: whatever a smuggled body leaves on it meets leash's next request.
  const route = { upstream: up.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['* /v1/ok'], maxSockets: 1 };
  leash = await startSidecar({ routes: { r: route } }, { env: { KEY: SECRET } });
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

describe('a framing header past the 2000th header line', () => {
  for (const method of ['GET', 'DELETE', 'OPTIONS', 'HEAD', 'POST', 'PUT', 'PATCH']) {
    for (const [name, framing] of Object.entries(FRAMINGS)) {
      it(`${method} with ${name} after 2000 lines: 400, and nothing reaches the upstream but the next allowed request`, async () => {
        seen.length = 0;
        const first = await rawRequest(port, `${method} /r/v1/ok HTTP/1.1\r\nhost: leash\r\n${'a:\r\n'.repeat(2000)}${framing}`, { timeoutMs: 1_000, expectResponses: 1 });
        // (raw: a HEAD answer's content-length announces a body that is not sent)
        expect(first.raw.startsWith('HTTP/1.1 400 '), first.raw.slice(0, 80)).toBe(true);
        const next = await rawRequest(port, 'GET /r/v1/ok HTTP/1.1\r\nhost: leash\r\n\r\n', { timeoutMs: 1_000, expectResponses: 1 });
        expect(next.responses[0]?.status).toBe(200);
        await sleep(50);
        expect(seen).toEqual([`GET /v1/ok Bearer ${SECRET}`]);
      });
    }
  }

  it('so is a WebSocket handshake with 2001 header lines', async () => {
    seen.length = 0;
    const r = await rawRequest(port, `GET /r/v1/ok HTTP/1.1\r\nhost: leash\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n${'a:\r\n'.repeat(1997)}\r\n`, { timeoutMs: 1_000, expectResponses: 1 });
    expect(r.responses[0]?.status).toBe(400);
    expect(seen).toEqual([]);
  });

  it('2000 lines, the framing among them, are still a request', async () => {
    seen.length = 0;
    const r = await rawRequest(port, `POST /r/v1/ok HTTP/1.1\r\nhost: leash\r\n${'a:\r\n'.repeat(1998)}content-length: 3\r\n\r\nabc`, { timeoutMs: 1_000, expectResponses: 1 });
    expect(r.responses[0]?.status).toBe(200);
    expect(seen).toEqual([`POST /v1/ok Bearer ${SECRET}`]);
  });
});
