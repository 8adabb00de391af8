import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, sleep } from '../helpers/security-net.js';

/**
 * Response queue poisoning on the pooled upstream connection. An answer whose framing has
 * no body (to HEAD; 204, 304) from an upstream that sends one anyway — a HEAD served by
 * its GET handler, the body written after the head — used to reach the request queued for
 * that socket next (another agent's, on another agent connection) as its answer, and every
 * later answer on the connection shifted by one. When the stray bytes came with the head,
 * Node already closed the connection; when they came a little later, nothing did.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-pool-desync-0123456789abcdef';
const FORGED = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 23\r\n\r\n{"forged":"by agent A"}';

let up: Server;
const sockets: Socket[] = [];
let leash: RunningSidecar;
let port: number;

/** The head at once, the "body" (a whole forged answer) `delay` ms later. */
const bodiless: Record<string, (delay: number) => (s: Socket) => void> = {
  'HEAD answered with a body': (d) => (s) => {
    s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${FORGED.length}\r\n\r\n`);
    setTimeout(() => s.write(FORGED), d);
  },
  '204 with a body': (d) => (s) => {
    s.write('HTTP/1.1 204 No Content\r\n\r\n');
    setTimeout(() => s.write(FORGED), d);
  },
  '304 with a body': (d) => (s) => {
    s.write(`HTTP/1.1 304 Not Modified\r\ncontent-length: ${FORGED.length}\r\n\r\n`);
    setTimeout(() => s.write(FORGED), d);
  },
};
let current: (s: Socket) => void = () => undefined;

beforeAll(async () => {
  up = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        const line = buf.slice(0, end).split('\r\n')[0]!;
        buf = buf.slice(end + 4);
        if (line.includes('/first')) current(s);
        else {
          // Every other request: its own answer, after a little work.
          const body = `for:${line.split(' ')[1]}`;
          setTimeout(() => s.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`), 40);
        }
      }
    });
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const route = {
    upstream: `http://127.0.0.1:${(up.address() as { port: number }).port}`,
    credential: { env: 'KEY' },
    inject: { header: 'authorization', format: 'Bearer {{credential}}' },
    allow: ['* /**'],
    maxSockets: 1,
  };
  leash = await startSidecar({ routes: { r: route } }, { env: { KEY: SECRET } });
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  for (const s of sockets) s.destroy();
  up?.close();
});

const send = (method: string, path: string, timeoutMs = 2_000) =>
  rawRequest(port, `${method} ${path} HTTP/1.1\r\nhost: x\r\n\r\n`, { expectResponses: 1, timeoutMs });

describe('an answer without a body never hands stray bytes to the next request', () => {
  for (const [name, answer] of Object.entries(bodiless)) {
    for (const delay of [5, 20]) {
      it(`${name}, the bytes ${delay} ms after the head`, async () => {
        current = answer(delay);
        await send('GET', '/r/warm-up'); // the route's one socket is connected and pooled
        for (let round = 0; round < 3; round++) {
          // A's request takes the route's only socket; B and C (other agent connections) queue behind it.
          const a = send(name.startsWith('HEAD') ? 'HEAD' : 'GET', '/r/first', 300);
          await sleep(5);
          const b = send('GET', `/r/victim-b${round}`);
          await sleep(5);
          const c = send('GET', `/r/victim-c${round}`);
          const [, rb, rc] = await Promise.all([a, b, c]);
          expect(rb.responses[0]?.body).toBe(`for:/victim-b${round}`);
          expect(rc.responses[0]?.body).toBe(`for:/victim-c${round}`);
        }
      });
    }
  }
});
