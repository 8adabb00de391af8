import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from './harness.js';

/**
 * Helpers for the security suite: an upstream that records every request it sees, and a
 * raw-socket client that sends bytes exactly as given (no client-side normalisation of
 * the target, the headers or the framing) and parses whatever comes back.
 */

export interface SeenRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  headers: IncomingMessage['headers'];
  body: string;
  remotePort: number | undefined;
}

export interface RecordingUpstream extends Upstream {
  seen: SeenRequest[];
  /** Every raw header value named `name` (case-insensitive) across all requests. */
  rawValues(name: string): string[];
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

const defaultHandler: Handler = (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ ok: true, url: req.url }));
};

/** A real HTTP server on 127.0.0.1:0 that records each request (after reading its body) before answering. */
export async function startRecordingUpstream(handler: Handler = defaultHandler): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const up = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: [...req.rawHeaders], headers: { ...req.headers }, body, remotePort: req.socket.remotePort });
      handler(req, res, body);
    });
  });
  return {
    ...up,
    seen,
    rawValues(name: string) {
      const out: string[] = [];
      for (const r of seen) for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]!.toLowerCase() === name.toLowerCase()) out.push(r.rawHeaders[i + 1]!);
      return out;
    },
  };
}

/** What recordingSidecar starts; filled in by its beforeAll. */
export interface RecordingSetup {
  up: RecordingUpstream;
  leash: RunningSidecar;
  /** The sidecar's agent-facing port. */
  port: number;
}

/**
 * A test file's usual set-up, registered as hooks: a recording upstream (with `handler`),
 * a sidecar with `routes(upstreamUrl)` and the credential `secret` in `KEY` (bearerRoute's
 * variable), both stopped after the file; the upstream's record cleared before each test.
 */
export function recordingSidecar(routes: (upstreamUrl: string) => Record<string, unknown>, secret: string, handler?: Handler): RecordingSetup {
  const setup = {} as RecordingSetup;
  beforeAll(async () => {
    setup.up = await startRecordingUpstream(handler);
    setup.leash = await startSidecar({ routes: routes(setup.up.url) }, { env: { KEY: secret } });
    setup.port = Number(new URL(setup.leash.url).port);
  });
  afterAll(async () => {
    await setup.leash?.stop();
    await setup.up?.close();
  });
  beforeEach(() => {
    if (setup.up) setup.up.seen.length = 0;
  });
  return setup;
}

/** Raw header names/values of one request, as [lowercased name, value] pairs. */
export function rawPairs(rawHeaders: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) out.push([rawHeaders[i]!.toLowerCase(), rawHeaders[i + 1]!]);
  return out;
}

export interface RawResponse {
  status: number;
  /** Header lines as [lowercased name, value], in order, exactly as received. */
  headers: [string, string][];
  body: string;
  header(name: string): string | undefined;
  json(): unknown;
}

export interface RawExchange {
  /** Everything the server sent, as latin1 text. */
  raw: string;
  /** The complete responses found in `raw` (1xx interim responses skipped). */
  responses: RawResponse[];
  /** The server closed (or reset) the connection before the timeout. */
  closed: boolean;
}

/**
 * Sends `bytes` on a fresh TCP connection and collects what comes back until the server
 * closes the connection, `expectResponses` complete responses have arrived, or
 * `timeoutMs` passes.
 */
export function rawRequest(port: number, bytes: string | Buffer, options: { timeoutMs?: number; expectResponses?: number } = {}): Promise<RawExchange> {
  const timeoutMs = options.timeoutMs ?? 3_000;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const raw = Buffer.concat(chunks).toString('latin1');
      resolve({ raw, responses: parseResponses(raw), closed });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('connect', () => socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes));
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (options.expectResponses !== undefined && parseResponses(Buffer.concat(chunks).toString('latin1')).length >= options.expectResponses) finish();
    });
    socket.on('error', () => {
      closed = true;
      finish();
    });
    socket.on('end', () => {
      closed = true;
      finish();
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

/** Parses consecutive HTTP/1.1 responses (Content-Length, chunked, or read-to-close bodies). */
export function parseResponses(raw: string): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const lines = raw.slice(at, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
    if (!m) break;
    const status = Number(m[1]);
    const headers: [string, string][] = lines.slice(1).map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
    });
    let pos = end + 4;
    const get = (name: string) => headers.find(([n]) => n === name)?.[1];
    let body = '';
    if (status >= 100 && status < 200) {
      at = pos;
      continue;
    }
    const te = get('transfer-encoding');
    const cl = get('content-length');
    if (te && /chunked/i.test(te)) {
      let complete = false;
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', pos);
        if (lineEnd === -1) break;
        const size = parseInt(raw.slice(pos, lineEnd), 16);
        if (Number.isNaN(size)) break;
        pos = lineEnd + 2;
        if (size === 0) {
          const trailerEnd = raw.indexOf('\r\n', pos);
          if (trailerEnd === -1) break;
          pos = trailerEnd + 2;
          complete = true;
          break;
        }
        if (pos + size + 2 > raw.length) break;
        body += raw.slice(pos, pos + size);
        pos += size + 2;
      }
      if (!complete) break;
    } else if (cl !== undefined) {
      const n = Number(cl);
      if (pos + n > raw.length) break;
      body = raw.slice(pos, pos + n);
      pos += n;
    } else {
      body = raw.slice(pos);
      pos = raw.length;
    }
    const text = Buffer.from(body, 'latin1').toString('utf8');
    out.push({
      status,
      headers,
      body: text,
      header: get,
      json: () => JSON.parse(text) as unknown,
    });
    at = pos;
  }
  return out;
}

/** Reserve a free port and release it: connecting to it afterwards is refused. */
export async function closedPort(): Promise<number> {
  const up = await startUpstream(() => undefined);
  const port = up.port;
  await up.close();
  return port;
}

/**
 * A POST of `body` with `Expect: 100-continue`, the way curl and SDKs send large uploads:
 * the head first, the body only once `100 Continue` came back. Resolves with the final
 * status and whether the 100 was seen.
 */
export function expectContinue(url: string, body: string, headers: OutgoingHttpHeaders): Promise<{ status: number; sawContinue: boolean }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'POST',
      headers: { ...headers, expect: '100-continue', 'content-length': Buffer.byteLength(body) },
    });
    let sawContinue = false;
    req.on('continue', () => {
      sawContinue = true;
      req.end(body);
    });
    req.on('response', (res: IncomingMessage) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sawContinue }));
    });
    req.on('error', reject);
    // Headers only; the body waits for 100 Continue.
    req.flushHeaders();
  });
}

/**
 * Calls `onHead` with each request head (without its blank line) arriving on an upstream's
 * `socket`, as it completes; a body is never read: whatever follows a head is read as the next.
 */
export function onRequestHeads(socket: Socket, onHead: (head: string) => void): void {
  let buf = '';
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let end: number;
    while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
      const head = buf.slice(0, end);
      buf = buf.slice(end + 4);
      onHead(head);
    }
  });
}

/** What startUpgradeRefusingUpstream records: each request head, by connection, and which connections closed. */
export interface UpgradeRefusingUpstream {
  port: number;
  seen: { conn: number; line: string; head: string }[];
  closed: Set<number>;
  close(): Promise<void>;
}

/**
 * A raw HTTP/1.1 upstream (over TLS with `tls`'s key and certificate): answers each request
 * head as it completes (a body is never read), keep-alive. An upgrade it does not perform:
 * refused with 403, connection kept; anything else 200. Records which connection carried what.
 */
export async function startUpgradeRefusingUpstream(tls?: { key: string; cert: string }): Promise<UpgradeRefusingUpstream> {
  const seen: UpgradeRefusingUpstream['seen'] = [];
  const closed = new Set<number>();
  const sockets = new Set<Socket>();
  let next = 0;
  const onConnection = (socket: Socket) => {
    const conn = next++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => closed.add(conn));
    onRequestHeads(socket, (head) => {
      seen.push({ conn, line: head.split('\r\n')[0]!, head });
      socket.write(/\r\nupgrade:/i.test(head) ? 'HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno' : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
  };
  const server = tls ? createTlsServer(tls, onConnection) : createNetServer(onConnection);
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

export { sleep } from './wait.js';
