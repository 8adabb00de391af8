import { createServer as createHttpsServer } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { verifyingRoutes, verifyPki, writeCaFiles, type CaFiles } from '../helpers/proxy-tls.js';
import { within } from '../helpers/proxy-util.js';
import { startUpgradeRefusingUpstream, type UpgradeRefusingUpstream } from '../helpers/security-net.js';
import { sleep } from '../helpers/wait.js';

/**
 * WebSocket handshakes to HTTPS upstreams (route.ts upgradeAgent): verified like every
 * other request to the route (its caFile, never an unverified connection), and on a
 * connection of their own that is closed, never pooled, when the upstream refuses.
 */
// Made up for this test (no vendor issues keys of this shape).
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-tls-upgrade-5e1f9a3c7b2d4e6f8a0c';
const inject = { header: 'authorization', format: 'Bearer {{credential}}' };
const pki = verifyPki('leash tls-upgrade test CA', 'leash tls-upgrade other CA');

let files: CaFiles;
let wssUp: Upstream;
let wss: WebSocketServer;
let handshakes: IncomingHttpHeaders[] = [];
let raw: UpgradeRefusingUpstream;
let leash: RunningSidecar;

beforeAll(async () => {
  files = writeCaFiles('leash-tls-upgrade-', pki);
  wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws: WebSocket) => ws.on('message', (data) => ws.send(`echo:${data.toString()}`)));
  const server = createHttpsServer(pki.tls);
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    handshakes.push(req.headers);
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  wssUp = await startUpstream((_req, res) => res.writeHead(426).end(), server);
  raw = await startUpgradeRefusingUpstream(pki.tls);
  const allow = ['GET /socket', 'GET /v1/**'];
  leash = await startSidecar(
    {
      routes: {
        ...verifyingRoutes(wssUp.url, { credential: { env: 'KEY' }, inject, allow }, files),
        refusing: { upstream: `https://127.0.0.1:${raw.port}`, credential: { env: 'KEY' }, inject, allow, caFile: files.caPath },
      },
    },
    { env: { KEY: SECRET }, caFiles: files.caFiles },
  );
});

afterAll(async () => {
  await leash?.stop();
  wss?.close();
  await wssUp?.close();
  await raw?.close();
  files?.remove();
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
