import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { onRequestHeads, parseResponses, rawRequest, sleep } from '../helpers/security-net.js';

/**
 * An upstream that answers before the request body has all gone out (an early 401 or 413).
 * Its connection is never reused and the upstream request ends when the answer has been
 * delivered: before, the rest of the body still went to it, and an upstream that had
 * answered without reading the body (a CL.0 desync) took that rest as its next request,
 * which leash's next request on the pooled connection completed with the credential; and
 * an agent that then stopped sending, or went away, held one of the route's sockets for
 * good (`maxSockets` of them and the route served nothing more).
 *
 * The upstream here is such a server: it answers every request head at once and reads
 * whatever follows as the next request.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-early-answer-7d2c9e4b1a6f3085';

let up: Server;
interface Conn {
  socket: Socket;
  closed: boolean;
  heads: string[];
}
const conns: Conn[] = [];
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = createServer((socket) => {
    const c: Conn = { socket, closed: false, heads: [] };
    conns.push(c);
    onRequestHeads(socket, (head) => {
      const auth = /\r\nauthorization: ([^\r]*)/i.exec(head)?.[1] ?? '-';
      c.heads.push(`${head.split('\r\n')[0]} ${auth}`);
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => (c.closed = true));
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const route = {
    upstream: `http://127.0.0.1:${(up.address() as { port: number }).port}`,
    credential: { env: 'KEY' },
    inject: { header: 'authorization', format: 'Bearer {{credential}}' },
    allow: ['* /v1/ok'],
    maxSockets: 1,
    timeouts: { idle: '30s' },
  };
  leash = await startSidecar({ routes: { r: route } }, { env: { KEY: SECRET } });
  port = Number(new URL(leash.url).port);
});
beforeEach(() => {
  for (const c of conns) c.socket.destroy();
  conns.length = 0;
});
afterAll(async () => {
  await leash?.stop();
  for (const c of conns) c.socket.destroy();
  up?.close();
});

/** An agent connection that sends `head` and resolves with it once the answer is in. */
async function answeredEarly(head: string): Promise<{ socket: Socket; read: () => string }> {
  const socket = await new Promise<Socket>((resolve) => {
    const s: Socket = connect(port, '127.0.0.1', () => resolve(s));
  });
  socket.on('error', () => undefined);
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  socket.write(head);
  for (let i = 0; i < 100 && parseResponses(got).length === 0; i++) await sleep(10);
  expect(parseResponses(got)[0]?.status).toBe(200);
  return { socket, read: () => got };
}

const allHeads = () => conns.flatMap((c) => c.heads);

describe('an upstream that answers before the request body is complete', () => {
  // The head and the body's first bytes (Node sends a request head with its first body
  // bytes), then the rest of the body.
  const FRAMED = {
    'content-length': {
      start: (first: string, rest: string) => `content-length: ${first.length + rest.length}\r\n\r\n${first}`,
      rest: (rest: string) => rest,
    },
    chunked: {
      start: (first: string) => `transfer-encoding: chunked\r\n\r\n${first.length.toString(16)}\r\n${first}\r\n`,
      rest: (rest: string) => `${rest.length.toString(16)}\r\n${rest}\r\n0\r\n\r\n`,
    },
  };
  for (const [name, f] of Object.entries(FRAMED)) {
    it(`${name}: the rest of the body never reaches that connection, so it cannot smuggle a request; the agent's connection keeps working`, async () => {
      const smuggled = 'DELETE /v1/forbidden HTTP/1.1\r\nhost: up\r\nx-swallow: ';
      const agent = await answeredEarly(`POST /r/v1/ok HTTP/1.1\r\nhost: leash\r\n${f.start('{}', smuggled)}`);
      agent.socket.write(f.rest(smuggled));
      await sleep(100);
      // The next allowed request, on the agent's same connection and on a fresh one.
      agent.socket.write('GET /r/v1/ok HTTP/1.1\r\nhost: leash\r\n\r\n');
      for (let i = 0; i < 100 && parseResponses(agent.read()).length < 2; i++) await sleep(10);
      expect(parseResponses(agent.read()).map((r) => r.status)).toEqual([200, 200]);
      const fresh = await rawRequest(port, 'GET /r/v1/ok HTTP/1.1\r\nhost: leash\r\n\r\n', { timeoutMs: 2_000, expectResponses: 1 });
      expect(fresh.responses[0]?.status).toBe(200);
      agent.socket.destroy();
      expect(allHeads().filter((h) => h.includes('forbidden'))).toEqual([]);
      expect(allHeads()).toEqual([`POST /v1/ok HTTP/1.1 Bearer ${SECRET}`, `GET /v1/ok HTTP/1.1 Bearer ${SECRET}`, `GET /v1/ok HTTP/1.1 Bearer ${SECRET}`]);
      // The early-answered connection was closed, not pooled.
      expect(conns[0]!.closed).toBe(true);
    });

    for (const after of ['goes away', 'stops sending'] as const) {
      it(`${name}: an agent that then ${after} does not hold the route's one socket`, async () => {
        const agent = await answeredEarly(`POST /r/v1/ok HTTP/1.1\r\nhost: leash\r\n${f.start('hello', 'x'.repeat(95))}`);
        if (after === 'goes away') agent.socket.destroy();
        await sleep(200);
        expect(conns[0]!.closed).toBe(true);
        const next = await rawRequest(port, 'GET /r/v1/ok HTTP/1.1\r\nhost: leash\r\n\r\n', { timeoutMs: 2_000, expectResponses: 1 });
        expect(next.responses[0]?.status).toBe(200);
        agent.socket.destroy();
      });
    }
  }
});
