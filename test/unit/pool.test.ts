import { Agent as HttpAgent, IncomingMessage, createServer, request, type Server } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepAliveValue, keepSocketAliveFor, upstreamAgent } from '../../src/sidecar/proxy/pool.js';

/**
 * The upstream pool's keepSocketAlive (pool.ts) makes Node 20's decisions — keep or drop
 * the socket, which idle timeout it gets — from the answer's raw headers, without making
 * Node build the parsed `headers` object. Pinned against Node's own method on the same inputs.
 */

/** An answer as Node's parser leaves it: raw headers in, the parsed object built on first read. */
function answered(rawHeaders: string[]): IncomingMessage {
  const res = new IncomingMessage(new Socket());
  (res as unknown as { _addHeaderLines(h: string[], n: number): void })._addHeaderLines(rawHeaders, rawHeaders.length);
  return res;
}

interface Call {
  op: string;
  args: unknown[];
}

/** A socket that records what the pool does to it, released after `rawHeaders` were answered. */
function fakeSocket(rawHeaders: string[] | undefined, timeout: number | undefined): { socket: Socket; calls: Call[]; parsedHeadersBuilt: () => boolean } {
  const calls: Call[] = [];
  let res: IncomingMessage | undefined;
  if (rawHeaders) res = answered(rawHeaders);
  let built = false;
  if (res) {
    // Node's parsed headers, built from rawHeaders on first read (as IncomingMessage does), and noticed.
    const real = Object.getOwnPropertyDescriptor(IncomingMessage.prototype, 'headers')!;
    Object.defineProperty(res, 'headers', {
      get() {
        built = true;
        return real.get!.call(this);
      },
    });
  }
  const socket = {
    timeout,
    _httpMessage: { res },
    setKeepAlive: (...args: unknown[]) => calls.push({ op: 'setKeepAlive', args }),
    unref: () => calls.push({ op: 'unref', args: [] }),
    setTimeout: (...args: unknown[]) => calls.push({ op: 'setTimeout', args }),
  } as unknown as Socket;
  return { socket, calls, parsedHeadersBuilt: () => built };
}

const HINTS: Array<string[] | undefined> = [
  undefined,
  [],
  ['Content-Type', 'application/json'],
  ['Keep-Alive', 'timeout=5'],
  ['keep-alive', 'timeout=5, max=1000'],
  ['KEEP-ALIVE', 'timeout=30'],
  ['Keep-Alive', 'timeout=1'],
  ['Keep-Alive', 'timeout=0'],
  ['Keep-Alive', 'timeout=2'],
  ['Keep-Alive', 'max=100, timeout=5'],
  ['Keep-Alive', 'TIMEOUT=5'],
  ['Keep-Alive', 'timeout=abc'],
  ['Keep-Alive', ''],
  ['Keep-Alive', 'timeout=5', 'Keep-Alive', 'timeout=1'],
  ['Keep-Alive', '', 'Keep-Alive', 'timeout=5'],
  ['X-Keep-Alive', 'timeout=1', 'Keep-Alive', 'timeout=9'],
  ['Keep-Alive', 'timeout=99999999999999999999'],
];

describe('upstream pool: keepSocketAlive decides as Node does', () => {
  it('keep or drop, and the idle timeout, for every hint × agent timeout × socket timeout', () => {
    for (const agentTimeout of [undefined, 0, 500, 3_000, 60_000]) {
      const agent = new HttpAgent({ keepAlive: true, keepAliveMsecs: 1234, ...(agentTimeout === undefined ? {} : { timeout: agentTimeout }) });
      for (const raw of HINTS) {
        for (const socketTimeout of [undefined, 0, 4_000]) {
          const node = fakeSocket(raw, socketTimeout);
          const ours = fakeSocket(raw, socketTimeout);
          const want = (HttpAgent.prototype.keepSocketAlive as unknown as (s: Socket) => boolean).call(agent, node.socket);
          const got = keepSocketAliveFor(agent, ours.socket);
          const what = JSON.stringify({ agentTimeout, raw, socketTimeout });
          expect(got, what).toBe(want);
          expect(ours.calls, what).toEqual(node.calls);
          expect(ours.parsedHeadersBuilt(), what).toBe(false);
        }
      }
      agent.destroy();
    }
  });

  it('keepAliveValue is the start of what Node parses for keep-alive', () => {
    for (const raw of HINTS) {
      if (!raw) continue;
      const res = answered(raw);
      const parsed = res.headers['keep-alive'] as string | undefined;
      const first = keepAliveValue(raw);
      if (parsed === undefined) expect(first).toBeUndefined();
      else expect(parsed.startsWith(first!), JSON.stringify(raw)).toBe(true);
      // What the hint regex sees is the same either way.
      expect(/^timeout=(\d+)/.exec(first ?? '')?.[1]).toBe(/^timeout=(\d+)/.exec(parsed ?? '')?.[1]);
    }
  });
});

describe('upstream pool: a real keep-alive upstream', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.setHeader('Keep-Alive', 'timeout=1');
      res.end('x');
    });
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const get = (agent: HttpAgent) =>
    new Promise<Socket>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(req.socket as Socket));
      });
      req.on('error', reject);
      req.end();
    });

  it('an upstream announcing timeout=1 gets no reused socket (Node drops it as too short), a plain one is reused', async () => {
    const agent = upstreamAgent(false, { keepAlive: true, maxSockets: 4 });
    const a = await get(agent);
    await new Promise((r) => setImmediate(r));
    const b = await get(agent);
    expect(b).not.toBe(a);
    agent.destroy();

    server.removeAllListeners('request');
    server.on('request', (_req, res) => res.end('y'));
    const pool = upstreamAgent(false, { keepAlive: true, maxSockets: 4 });
    // Node's server announces `Keep-Alive: timeout=5` itself (keepAliveTimeout): kept, reused.
    const c = await get(pool);
    await new Promise((r) => setImmediate(r));
    const d = await get(pool);
    expect(d).toBe(c);
    pool.destroy();
  });
});
