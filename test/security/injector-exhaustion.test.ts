import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tlsFiles } from '../../src/bin/injector.js';
import { parseInjectorConfig } from '../../src/config/injector.js';
import { DEFAULT_MAX_BUFFERED, InjectorServer, MAX_CONNECTIONS } from '../../src/injector/server.js';
import { issueServerCert, makeCa, type TestCa } from '../helpers/proxy-tls.js';

/**
 * Anything in the cluster reaches the webhook's port, with no client authentication, and
 * the webhook fails closed (failurePolicy: Fail): whoever keeps the injector from answering
 * the API server keeps every opted-in pod of the cluster from being created. Measured
 * before the fix, from one unprivileged client: 256 TCP connections that never start TLS
 * (the injector then dropped every new connection, the API server's included, for as long
 * as they stayed open: Node's TLS handshake timeout is 120 s), and four uploads of just
 * under 8 MiB that never finish (every review then answered 503 until requestTimeout).
 * The server must keep answering a real review while an attacker holds what it can hold.
 */
let ca: TestCa;
let dir: string;
let server: InjectorServer;
let port: number;
const held: Socket[] = [];
const review = readFileSync(new URL('../fixtures/admission/deployment-pod.json', import.meta.url), 'utf8');

beforeAll(async () => {
  ca = makeCa();
  dir = mkdtempSync(join(tmpdir(), 'leash-injector-dos-'));
  const cert = issueServerCert(ca);
  writeFileSync(join(dir, 'tls.crt'), cert.certPem);
  writeFileSync(join(dir, 'tls.key'), cert.keyPem);
  const injector = parseInjectorConfig(
    `tls: { certFile: ${join(dir, 'tls.crt')}, keyFile: ${join(dir, 'tls.key')} }
image: ghcr.io/example/leash:0.9.0
authority: { url: "https://leash-authority.leash-system.svc:8443" }
routes:
  openai: { upstream: "https://api.openai.com", credential: openai, inject: { header: authorization, format: "Bearer {{credential}}" }, allow: ["GET /v1/models"], agentEnv: { OPENAI_BASE_URL: "{{baseUrl}}/v1" } }
  search: { upstream: "https://search.example.com", credential: search, inject: { query: key }, allow: ["GET /search"] }
`,
    {},
  );
  server = new InjectorServer({ injector, tls: tlsFiles(join(dir, 'tls.crt'), join(dir, 'tls.key')), logger: pino({ level: 'silent' }), reloadInterval: 60_000 });
  port = (await server.listen('127.0.0.1', 0)).port;
});

afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  // Nothing the attacker held stays counted: every connection and byte is let go.
  for (let i = 0; i < 50 && (server.openConnections > 0 || server.bufferedBytes > 0); i++) await new Promise((r) => setTimeout(r, 20));
  expect(server.openConnections).toBe(0);
  expect(server.bufferedBytes).toBe(0);
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One review as the API server sends it, on a fresh connection: its status, or why none came within the webhook's 5 s. */
function apiServerReview(): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, servername: 'localhost', path: '/mutate', method: 'POST', ca: ca.certPem, agent: false, timeout: 5_000, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      resolve('timeout');
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    req.end(review);
  });
}

const settle = (ms = 300) => new Promise((r) => setTimeout(r, ms));

/** Holders of every kind an attacker can open; each is kept in `held` and destroyed after the test. */
const holders = {
  /** A TCP connection that never starts TLS. */
  tcp(): Socket {
    const s = tcpConnect(port, '127.0.0.1');
    s.on('error', () => undefined);
    held.push(s);
    return s;
  },
  /** A TLS connection that never sends a request. */
  tls(): Socket {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.certPem });
    s.on('error', () => undefined);
    held.push(s);
    return s;
  },
  /** A request whose headers are sent and whose body (of `size` declared bytes) is never finished. */
  upload(size: number, sendBytes: number): Socket & { answer: string } {
    const s = Object.assign(tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.certPem }), { answer: '' });
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => (s.answer += d.toString('latin1')));
    s.once('secureConnect', () => {
      s.write(`POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${size}\r\n\r\n`);
      s.write(Buffer.alloc(sendBytes, 0x20));
    });
    held.push(s);
    return s;
  },
};

describe('injector under connection and memory exhaustion (failurePolicy: Fail makes its outage a cluster-wide refusal)', () => {
  it('sanity: a review is answered', async () => {
    expect(await apiServerReview()).toBe(200);
  });

  for (const kind of ['tcp', 'tls', 'headers'] as const) {
    it(`keeps answering the API server while ${MAX_CONNECTIONS} connections (${kind === 'tcp' ? 'no TLS started' : kind === 'tls' ? 'TLS, no request' : 'a request under way, body unfinished'}) are held open`, async () => {
      for (let i = 0; i < MAX_CONNECTIONS + 8; i++) {
        if (kind === 'tcp') holders.tcp();
        else if (kind === 'tls') holders.tls();
        else holders.upload(1024, 16);
        if (i % 32 === 31) await settle(50);
      }
      await settle(500);
      for (let i = 0; i < 3; i++) expect(await apiServerReview(), `review ${i}`).toBe(200);
    });
  }

  it(`keeps answering while ${MAX_CONNECTIONS} requests are held under way and new bare connections keep arriving (each one evicts the newest idle connection: the API server's, mid-handshake)`, async () => {
    for (let i = 0; i < MAX_CONNECTIONS; i++) {
      holders.upload(1024, 16);
      if (i % 32 === 31) await settle(50);
    }
    await settle(500);
    // A bare TCP connection every millisecond or so: at the cap, each takes the place of the
    // oldest connection with no review under way, which is the API server's while it does
    // its TLS handshake or sends its headers.
    const flood = setInterval(() => holders.tcp(), 1);
    try {
      await settle(100);
      for (let i = 0; i < 3; i++) expect(await apiServerReview(), `review ${i}`).toBe(200);
    } finally {
      clearInterval(flood);
    }
  });

  it(`keeps answering while held uploads fill the ${DEFAULT_MAX_BUFFERED / 1024 / 1024} MiB budget of request bytes: the biggest holder is shed, not the review`, async () => {
    // Four uploads of the largest review taken (8 MiB), one byte short, fill the budget but for 4 bytes.
    const big = DEFAULT_MAX_BUFFERED / 4;
    const uploads = Array.from({ length: 4 }, () => holders.upload(big, big - 1));
    for (let i = 0; i < 100 && server.bufferedBytes < DEFAULT_MAX_BUFFERED - 4; i++) await settle(50);
    expect(server.bufferedBytes).toBe(DEFAULT_MAX_BUFFERED - 4);
    for (let i = 0; i < 3; i++) expect(await apiServerReview(), `review ${i}`).toBe(200);
    await settle(200);
    // One held upload made room (503, closed); the other three are still held.
    expect(uploads.filter((u) => u.answer.startsWith('HTTP/1.1 503 ')).length).toBe(1);
    expect(server.bufferedBytes).toBe(3 * (big - 1));
  });
});
