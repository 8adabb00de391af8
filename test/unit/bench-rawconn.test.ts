import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { paced, RawConn } from '../../bench/lib.js';

/**
 * bench/lib.ts RawConn is the benches' client: what it reads decides the figures. It reads
 * each piece once (a terminator may straddle two reads) and concatenates the body at the
 * end; these cases split answers at every byte, so a terminator or an event boundary that
 * only counts when it arrives in one read is caught.
 */
const HEAD_CHUNKED = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';
const chunk = (s: string): string => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
const EVENTS = ['data: {"n":0}\n\n', 'data: {"n":1}\n\n', 'data: {"n":2}\n\n'];
const SSE_ANSWER = HEAD_CHUNKED + EVENTS.map(chunk).join('') + '0\r\n\r\n';
const BODY = EVENTS.map(chunk).join('') + '0\r\n\r\n';
const LENGTH_ANSWER = 'HTTP/1.1 201 Created\r\ncontent-length: 11\r\n\r\nhello world';

let server: Server;
/** What the server sends for the next request: the answer's pieces, written one read apart. */
let pieces: string[] = [];
/** How far apart the pieces are written (ms). */
let apart = 1;

async function writeApart(socket: Socket, parts: readonly string[]): Promise<void> {
  for (const p of parts) {
    socket.write(p);
    // Far enough apart that the client reads each piece on its own.
    await new Promise((r) => setTimeout(r, apart));
  }
}

beforeAll(async () => {
  server = createServer((socket) => {
    // Each piece in its own segment, sent at once (Nagle would hold the second for an ACK).
    socket.setNoDelay(true);
    socket.on('data', () => void writeApart(socket, pieces));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const port = (): number => (server.address() as AddressInfo).port;
const GET = Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n');

/** One keep-alive connection to the test server for `body`, destroyed after it. */
async function withConn(body: (conn: RawConn) => Promise<void>): Promise<void> {
  const conn = await RawConn.open('127.0.0.1', port());
  try {
    await body(conn);
  } finally {
    conn.destroy();
  }
}

describe('bench RawConn', () => {
  it('a chunked event stream split in two at every byte: the whole body, every time, and the first event is found', () =>
    withConn(async (conn) => {
      for (let at = 1; at < SSE_ANSWER.length; at++) {
        pieces = [SSE_ANSWER.slice(0, at), SSE_ANSWER.slice(at)];
        const r = await conn.request(GET);
        expect(r.status, `split at ${at}`).toBe(200);
        expect(r.body.toString('latin1'), `split at ${at}`).toBe(BODY);
        expect(r.firstEventUs, `split at ${at}`).toBeDefined();
        expect(r.afterFirstEventUs, `split at ${at}`).toBeGreaterThanOrEqual(0);
      }
    }), 30_000);

  it('the stream byte by byte: the first event is stamped when its blank line arrives, the span runs to the last byte', () =>
    withConn(async (conn) => {
      pieces = [...SSE_ANSWER];
      apart = 3;
      const r = await conn.request(GET);
      apart = 1;
      expect(r.body.toString('latin1')).toBe(BODY);
      // The first event ends well before the answer: the rest took many reads 3 ms apart.
      const firstEnds = HEAD_CHUNKED.length + chunk(EVENTS[0]!).length - 2;
      const remainingReads = SSE_ANSWER.length - firstEnds;
      expect(r.afterFirstEventUs!).toBeGreaterThan(remainingReads * 2_000);
      expect(r.latencyUs - r.firstEventUs!).toBeCloseTo(r.afterFirstEventUs!, -2);
    }), 30_000);

  it('a content-length answer split at every byte, then the next request on the same connection', () =>
    withConn(async (conn) => {
      for (let at = 1; at < LENGTH_ANSWER.length; at++) {
        pieces = [LENGTH_ANSWER.slice(0, at), LENGTH_ANSWER.slice(at)];
        const r = await conn.request(GET);
        expect(r.status).toBe(201);
        expect(r.body.toString('latin1')).toBe('hello world');
        expect(r.firstEventUs).toBeUndefined();
        expect(r.afterFirstEventUs).toBeUndefined();
      }
    }), 30_000);

  it('an empty chunked body (the last chunk alone) completes', () =>
    withConn(async (conn) => {
      pieces = [HEAD_CHUNKED + '0\r\n', '\r\n'];
      const r = await conn.request(GET);
      expect(r.status).toBe(200);
      expect(r.body.toString('latin1')).toBe('0\r\n\r\n');
    }));
});

describe('bench paced', () => {
  it('replaces pooled connections the server closed while idle instead of counting them as errors', async () => {
    // A server that closes a keep-alive connection after ~1.15 s idle (Node 20 adds 1 s to
    // keepAliveTimeout), and answers slowly
    // in two windows: the first spreads requests over every pooled connection, the quiet
    // middle uses only the top of the (LIFO) pool so the rest go idle and are closed, the
    // second needs them again.
    const { createServer: createHttpServer } = await import('node:http');
    let t0 = 0;
    const http = createHttpServer({ keepAliveTimeout: 150 }, (_req, res) => {
      t0 ||= performance.now();
      const at = performance.now() - t0;
      const slow = at < 150 || (at > 1_600 && at < 1_900);
      setTimeout(() => res.end('ok'), slow ? 60 : 0);
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const p = (http.address() as AddressInfo).port;
      const r = await paced({ host: '127.0.0.1', port: p, payload: GET, rate: 100, durationMs: 2_000, connections: 8 });
      expect(r.errors).toBe(0);
      expect(r.reopened).toBeGreaterThan(0);
      expect(r.ok).toBe(r.sent);
    } finally {
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    }
  }, 20_000);
});
