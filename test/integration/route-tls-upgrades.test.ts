import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { issueServerCert, makeCa } from '../helpers/proxy-tls.js';
import { within } from '../helpers/proxy-util.js';
import { sleep } from '../helpers/wait.js';

/**
 * WebSocket handshakes to HTTPS upstreams (route.ts upgradeAgent): verified like every
 * other request to the route (its caFile, never an unverified connection), and on a
 * connection of their own that is closed, never pooled, when the upstream refuses.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-tls-upgrade-5e1f9a3c7b2d4e6f8a0c';
const inject = { header: 'authorization', format: 'Bearer {{credential}}' };
const ca = makeCa('leash tls-upgrade test CA');
const otherCa = makeCa('leash tls-upgrade other CA');
const serverCert = issueServerCert(ca, { ips: ['127.0.0.1'], dns: ['localhost'] });

/** A raw TLS upstream: refuses every upgrade with 403 and keeps the connection; answers other requests 200. */
interface RawTlsUpstream {
  port: number;
  seen: { conn: number; line: string; head: string }[];
  closed: Set<number>;
  close(): Promise<void>;
}
async function rawTlsUpstream(): Promise<RawTlsUpstream> {
  const seen: RawTlsUpstream['seen'] = [];
  const closed = new Set<number>();
  const sockets = new Set<Socket>();
  let next = 0;
  const server: TlsServer = createTlsServer({ key: serverCert.keyPem, cert: serverCert.certPem }, (socket: TLSSocket) => {
    const conn = next++;
    sockets.add(socket);
    let buf = '';
    socket.on('error', () => undefined);
    socket.on('close', () => closed.add(conn));
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        seen.push({ conn, line: head.split('\r\n')[0]!, head });
        socket.write(/\r\nupgrade:/i.test(head) ? 'HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno' : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    seen,
    closed,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

let dir: string;
let wssUp: Upstream;
let wss: WebSocketServer;
let handshakes: IncomingHttpHeaders[] = [];
let raw: RawTlsUpstream;
let leash: RunningSidecar;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'leash-tls-upgrade-'));
  const caPath = join(dir, 'ca.pem');
  const otherPath = join(dir, 'other-ca.pem');
  writeFileSync(caPath, ca.certPem);
  writeFileSync(otherPath, otherCa.certPem);
  wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws: WebSocket) => ws.on('message', (data) => ws.send(`echo:${data.toString()}`)));
  const server = createHttpsServer({ key: serverCert.keyPem, cert: serverCert.certPem });
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    handshakes.push(req.headers);
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  wssUp = await startUpstream((_req, res) => res.writeHead(426).end(), server);
  raw = await rawTlsUpstream();
  const allow = ['GET /socket', 'GET /v1/**'];
  leash = await startSidecar(
    {
      routes: {
        privateca: { upstream: wssUp.url, credential: { env: 'KEY' }, inject, allow, caFile: caPath },
        systemroots: { upstream: wssUp.url, credential: { env: 'KEY' }, inject, allow },
        wrongca: { upstream: wssUp.url, credential: { env: 'KEY' }, inject, allow, caFile: otherPath },
        refusing: { upstream: `https://127.0.0.1:${raw.port}`, credential: { env: 'KEY' }, inject, allow, caFile: caPath },
      },
    },
    {
      env: { KEY: SECRET },
      caFiles: new Map([
        [caPath, ca.certPem],
        [otherPath, otherCa.certPem],
      ]),
    },
  );
});

afterAll(async () => {
  await leash?.stop();
  wss?.close();
  await wssUp?.close();
  await raw?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const wsUrl = (path: string) => `${leash.url.replace(/^http/, 'ws')}${path}`;

/** The upgrade's outcome: the open socket, or the HTTP answer leash gave instead. */
function upgrade(path: string): Promise<{ open: WebSocket } | { status: number; headers: IncomingHttpHeaders; body: string }> {
  return within(
    new Promise((resolve, reject) => {
      const client = new WebSocket(wsUrl(path));
      client.on('open', () => resolve({ open: client }));
      client.on('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      client.on('error', reject);
    }),
    3_000,
    `leash to answer the upgrade to ${path}`,
  );
}

describe('WebSocket upgrades to an HTTPS upstream', () => {
  it("with the route's caFile the handshake is verified and the socket works, credential injected", async () => {
    handshakes = [];
    const got = await upgrade('/privateca/socket');
    if (!('open' in got)) throw new Error(`upgrade refused: ${got.status} ${got.body}`);
    const reply = new Promise<string>((resolve) => got.open.once('message', (d) => resolve(d.toString())));
    got.open.send('ping');
    expect(await within(reply, 3_000, 'the echo')).toBe('echo:ping');
    got.open.terminate();
    expect(handshakes.map((h) => h.authorization)).toEqual([`Bearer ${SECRET}`]);
  });

  it('an upstream whose certificate does not verify (system roots, another CA) is refused 502: the handshake never reaches it', async () => {
    handshakes = [];
    for (const route of ['systemroots', 'wrongca']) {
      const got = await upgrade(`/${route}/socket`);
      if ('open' in got) {
        got.open.terminate();
        throw new Error(`the upgrade through ${route} was accepted`);
      }
      expect(got.status, route).toBe(502);
      expect(got.headers['x-leash-error'], route).toBe('leash_upstream_unreachable');
    }
    expect(handshakes).toEqual([]);
  });

  it("a refused handshake's TLS connection is closed, never reused for the next handshake", async () => {
    for (let i = 0; i < 2; i++) {
      const got = await upgrade('/refusing/socket');
      if ('open' in got) throw new Error('the upgrade was accepted');
      expect(got.status).toBe(403);
    }
    await sleep(100);
    const handshakeConns = raw.seen.filter((s) => s.line.startsWith('GET /socket ')).map((s) => s.conn);
    expect(handshakeConns).toHaveLength(2);
    expect(new Set(handshakeConns).size).toBe(2);
    for (const conn of handshakeConns) expect(raw.closed.has(conn), `connection ${conn} closed`).toBe(true);
    expect(raw.seen.every((s) => s.head.includes(`Bearer ${SECRET}`))).toBe(true);
  });
});
