import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { deferred, within, type Deferred } from '../helpers/proxy-util.js';

/**
 * WebSocket upgrades through leash to a real `ws` server: the credential rides on the
 * upgrade request, frames flow both ways, denied paths never reach the upstream, and
 * either side closing tears down the other.
 */
const SECRET = 'sk-ws-9c8b7a6f5e4d3c2b1a0f9e8d';
const AGENT_AUTH = 'Bearer agent-own-ws-token';

interface UpgradeSeen {
  url: string;
  headers: IncomingHttpHeaders;
}
interface ServerConn {
  ws: WebSocket;
  closed: Deferred<{ code: number; reason: string }>;
  messages: string[];
}

let upstream: Upstream;
let wss: WebSocketServer;
let leash: RunningSidecar;
const upgrades: UpgradeSeen[] = [];
const conns: ServerConn[] = [];
let nextConn = deferred<ServerConn>();

beforeAll(async () => {
  wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws: WebSocket) => {
    const conn: ServerConn = { ws, closed: deferred(), messages: [] };
    conns.push(conn);
    ws.on('close', (code, reason) => conn.closed.resolve({ code, reason: reason.toString() }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.send(Buffer.concat([Buffer.from('echo:'), data as Buffer]), { binary: true });
        return;
      }
      conn.messages.push(data.toString());
      ws.send(`echo:${data.toString()}`);
    });
    ws.send('hello-from-upstream');
    nextConn.resolve(conn);
  });
  const server = createServer();
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  upstream = await startUpstream((_req, res) => res.writeHead(426).end(), server);
  leash = await startSidecar(
    {
      routes: {
        rt: {
          upstream: upstream.url,
          credential: { env: 'KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['GET /v1/realtime'],
        },
        nows: {
          upstream: upstream.url,
          credential: { env: 'KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['GET /v1/realtime'],
          websocket: false,
        },
      },
    },
    { env: { KEY: SECRET } },
  );
});

afterAll(async () => {
  await leash?.stop();
  for (const c of conns) c.ws.terminate();
  wss?.close();
  await upstream?.close();
});

const wsBase = () => leash.url.replace(/^http/, 'ws');

/** Open a client through leash and wait until both ends are connected and the greeting arrived. */
async function connect(path = '/rt/v1/realtime?model=gpt-realtime'): Promise<{ client: WebSocket; server: ServerConn; inbox: string[]; next(): Promise<string>; closed: Deferred<{ code: number; reason: string }> }> {
  nextConn = deferred<ServerConn>();
  const client = new WebSocket(`${wsBase()}${path}`, { headers: { authorization: AGENT_AUTH, 'x-api-key': 'agent-x-key' } });
  const inbox: string[] = [];
  const waiters: ((m: string) => void)[] = [];
  const closed = deferred<{ code: number; reason: string }>();
  client.on('message', (data) => {
    const text = data.toString();
    const w = waiters.shift();
    if (w) w(text);
    else inbox.push(text);
  });
  client.on('close', (code, reason) => closed.resolve({ code, reason: reason.toString() }));
  client.on('error', () => undefined);
  const next = () =>
    within(
      new Promise<string>((resolve) => {
        const queued = inbox.shift();
        if (queued !== undefined) resolve(queued);
        else waiters.push(resolve);
      }),
      3_000,
      'a message from the upstream',
    );
  await within(new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    client.once('error', reject);
  }), 3_000, 'the WebSocket to open');
  const server = await within(nextConn.promise, 3_000, 'the upstream connection');
  expect(await next()).toBe('hello-from-upstream');
  return { client, server, inbox, next, closed };
}

/** Try an upgrade that leash should refuse; resolves with the HTTP answer it gave instead. */
function refusedUpgrade(path: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return within(
    new Promise((resolve, reject) => {
      const client = new WebSocket(`${wsBase()}${path}`, { headers: { authorization: AGENT_AUTH } });
      client.on('open', () => {
        client.terminate();
        reject(new Error(`upgrade to ${path} was accepted`));
      });
      client.on('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      client.on('error', () => undefined);
    }),
    3_000,
    `leash to answer the upgrade to ${path}`,
  );
}

describe('WebSocket through leash', () => {
  it('the upgrade carries the injected credential, never the agent’s own', async () => {
    const before = upgrades.length;
    const { client, closed } = await connect();
    expect(upgrades.length).toBe(before + 1);
    const up = upgrades.at(-1)!;
    expect(up.url).toBe('/v1/realtime?model=gpt-realtime');
    expect(up.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(up.headers['x-api-key']).toBeUndefined();
    expect(JSON.stringify(up.headers)).not.toContain('agent-own');
    expect(up.headers.upgrade?.toLowerCase()).toBe('websocket');
    expect(up.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    client.close();
    await within(closed.promise, 3_000, 'client close');
  });

  it('messages echo both ways, text and binary, small and large', async () => {
    const { client, server, next, closed } = await connect();
    client.send('ping-1');
    expect(await next()).toBe('echo:ping-1');
    client.send('ping-2');
    expect(await next()).toBe('echo:ping-2');
    expect(server.messages).toEqual(['ping-1', 'ping-2']);
    // Upstream-initiated message.
    server.ws.send('pushed-by-upstream');
    expect(await next()).toBe('pushed-by-upstream');
    // A large binary frame crosses intact.
    const big = Buffer.alloc(512 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const gotBinary = within(
      new Promise<Buffer>((resolve) => client.once('message', (data, isBinary) => isBinary && resolve(data as Buffer))),
      3_000,
      'the binary echo',
    );
    client.send(big, { binary: true });
    const echoed = await gotBinary;
    expect(echoed.subarray(0, 5).toString()).toBe('echo:');
    expect(echoed.subarray(5).equals(big)).toBe(true);
    client.close();
    await within(closed.promise, 3_000, 'client close');
  });

  it('a path outside allow is refused with 403 and never reaches the upstream', async () => {
    const before = upgrades.length;
    const r = await refusedUpgrade('/rt/v2/other');
    expect(r.status).toBe(403);
    expect(r.headers['x-leash-error']).toBe('leash_denied');
    expect(JSON.parse(r.body)).toMatchObject({ error: { type: 'leash_denied', route: 'rt' } });
    const off = await refusedUpgrade('/nows/v1/realtime');
    expect(off.status).toBe(403);
    expect(off.headers['x-leash-error']).toBe('leash_denied');
    const unknown = await refusedUpgrade('/nope/v1/realtime');
    expect(unknown.status).toBe(404);
    expect(upgrades.length).toBe(before);
  });

  it('closing the client closes the upstream socket (close code passes through)', async () => {
    const { client, server } = await connect();
    client.close(4001, 'agent-bye');
    const c = await within(server.closed.promise, 3_000, 'the upstream socket to close');
    expect(c).toEqual({ code: 4001, reason: 'agent-bye' });
  });

  it('an agent that drops the connection without a close frame closes the upstream socket', async () => {
    const { client, server } = await connect();
    client.terminate();
    const c = await within(server.closed.promise, 3_000, 'the upstream socket to close after terminate');
    expect(c.code).toBe(1006);
  });

  it('the upstream closing closes the client (and an upstream drop does too)', async () => {
    const a = await connect();
    a.server.ws.close(4002, 'upstream-bye');
    expect(await within(a.closed.promise, 3_000, 'the client to see the close')).toEqual({ code: 4002, reason: 'upstream-bye' });

    const b = await connect();
    b.server.ws.terminate();
    const c = await within(b.closed.promise, 3_000, 'the client to see the drop');
    expect(c.code).toBe(1006);
  });
});
