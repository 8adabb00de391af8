import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpJsonError, httpJson, httpJsonAgent, type HttpJsonFailure, type HttpJsonRequest } from '../../src/core/http-json.js';
import { issueServerCert, makeCa, type TestCa } from '../helpers/proxy-tls.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The one HTTP(S) JSON client (src/core/http-json.ts) against real HTTP and HTTPS servers
 * on port 0: its bounds (body size, one deadline for the whole exchange), what it does
 * to the socket when it gives up, TLS verification and mTLS, keep-alive reuse and the
 * stale-socket retry, and that no secret it was given ever shows in what it throws.
 */

// A fake key, made up for this test (only its bytes are searched for in what is thrown).
const SECRET = 'sk-live-HTTPJSONSECRET-9c1e';
const SECRET_PART = 'HTTPJSONSECRET';

let ca: TestCa;
let foreignCa: TestCa;
let serverTls: { certPem: string; keyPem: string };
let clientCa: TestCa;
let clientTls: { certPem: string; keyPem: string };

beforeAll(() => {
  ca = makeCa('http-json test CA');
  foreignCa = makeCa('http-json test CA'); // same name, another key
  serverTls = issueServerCert(ca);
  clientCa = makeCa('http-json client CA');
  clientTls = clientCert(clientCa, 'leash-client-7');
});

/** A client certificate (clientAuth) for `cn`, signed by `issuer`. */
function clientCert(issuer: TestCa, cn: string): { certPem: string; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = `1${randomBytes(15).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3_600_000);
  cert.setSubject([{ name: 'commonName', value: cn }]);
  cert.setIssuer(issuer.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
  ]);
  cert.sign(issuer.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() };
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

interface TestServer {
  url: string;
  /** Requests that reached the handler. */
  requests: number;
  /** TCP connections accepted, and those still open. */
  connections: number;
  open: Set<Socket>;
  handler: Handler;
  close(): Promise<void>;
}

const servers: { close(): Promise<void> }[] = [];
const agents: { destroy(): void }[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) a.destroy();
  for (const s of servers.splice(0)) await s.close();
});

async function serve(kind: 'http' | 'https', handler: Handler, tls: Record<string, unknown> = {}): Promise<TestServer> {
  const t: TestServer = { url: '', requests: 0, connections: 0, open: new Set(), handler, close: async () => undefined };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      t.requests++;
      t.handler(req, res, Buffer.concat(chunks));
    });
  };
  const server: Server = kind === 'http' ? createHttpServer(onRequest) : createHttpsServer({ cert: serverTls.certPem, key: serverTls.keyPem, ...tls }, onRequest);
  server.on('connection', (s: Socket) => {
    t.connections++;
    t.open.add(s);
    s.on('close', () => t.open.delete(s));
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.url = `${kind}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.close = () =>
    new Promise<void>((r) => {
      for (const s of t.open) s.destroy();
      server.close(() => r());
    });
  servers.push(t);
  return t;
}

/** A raw TCP server (for servers that do not speak HTTP as they should). */
async function rawServer(onSocket: (s: Socket) => void): Promise<{ port: number; open: Set<Socket>; connections: () => number }> {
  const open = new Set<Socket>();
  let count = 0;
  const server = createNetServer((s) => {
    count++;
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => undefined);
    s.resume(); // read, so that the client's hang-up is seen ('close')
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push({
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  });
  return { port: (server.address() as AddressInfo).port, open, connections: () => count };
}

const base = (url: string, over: Partial<HttpJsonRequest> = {}): HttpJsonRequest => ({
  method: 'GET',
  url: new URL('/x', url),
  timeoutMs: 2_000,
  maxBodyBytes: 1024,
  ...over,
});

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

/** Every text an error exposes: message, stack, String(), JSON, and the same down its cause chain. */
function errorTexts(err: unknown): string[] {
  const out: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const x = e as Error & { cause?: unknown };
    out.push(String(x), String(x.message), String(x.stack), JSON.stringify(x), JSON.stringify(Object.getOwnPropertyNames(x).map((k) => [k, (x as unknown as Record<string, unknown>)[k]])));
    // Bytes kept on an error (an HTTP parse error's rawPacket) are read as text too.
    for (const k of Object.getOwnPropertyNames(x)) {
      const v = (x as unknown as Record<string, unknown>)[k];
      if (Buffer.isBuffer(v)) out.push(v.toString('latin1'));
    }
    e = x.cause;
  }
  return out;
}

async function failure(p: Promise<unknown>, want: HttpJsonFailure): Promise<{ err: HttpJsonError; ms: number }> {
  const started = performance.now();
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  const ms = performance.now() - started;
  expect(caught, 'the call must fail').toBeInstanceOf(HttpJsonError);
  const err = caught as HttpJsonError;
  expect(err.failure, err.message).toBe(want);
  expect(err.code).toBe(`HTTP_JSON_${want.toUpperCase()}`);
  for (const text of errorTexts(err)) expect(text).not.toContain(SECRET_PART);
  return { err, ms };
}

describe('answers: status, headers and body are the caller’s', () => {
  it('a 200 and a 404 both resolve, with status, headers, text and parsed JSON; the request carries method, JSON body and headers', async () => {
    let seen: { method?: string; type?: string; length?: string; accept?: string; extra?: string; body?: string } = {};
    const s = await serve('http', (req, res, body) => {
      seen = { method: req.method, type: req.headers['content-type'], length: req.headers['content-length'], accept: req.headers.accept, extra: req.headers['x-extra'] as string, body: body.toString() };
      sendJson(res, req.url === '/missing' ? 404 : 200, { ok: req.url !== '/missing', echo: JSON.parse(body.toString() || 'null') });
    });
    const ok = await httpJson(base(s.url, { method: 'POST', json: { a: 1, s: 'é' }, headers: { 'x-extra': 'yes' } }));
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toBe('application/json');
    expect(ok.json()).toEqual({ ok: true, echo: { a: 1, s: 'é' } });
    expect(seen).toEqual({ method: 'POST', type: 'application/json', length: String(Buffer.byteLength('{"a":1,"s":"é"}')), accept: 'application/json', extra: 'yes', body: '{"a":1,"s":"é"}' });

    const missing = await httpJson(base(s.url, { url: new URL('/missing', s.url) }));
    expect(missing.status).toBe(404);
    expect(missing.json()).toEqual({ ok: false, echo: null });
    expect(seen.type).toBeUndefined(); // no body, no content-type
  });

  it('an encoded body goes as given, with the caller’s content-type', async () => {
    let got = '';
    let type = '';
    const s = await serve('http', (req, res, body) => {
      got = body.toString();
      type = String(req.headers['content-type']);
      sendJson(res, 200, {});
    });
    await httpJson(base(s.url, { method: 'POST', body: 'grant_type=client_credentials', headers: { 'content-type': 'application/x-www-form-urlencoded' } }));
    expect(got).toBe('grant_type=client_credentials');
    expect(type).toBe('application/x-www-form-urlencoded');
  });
});

describe('bounded body', () => {
  it('a body of exactly the limit is read; one byte more is too_large, with the status', async () => {
    let size = 1024;
    const s = await serve('http', (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('x'.repeat(size));
    });
    expect((await httpJson(base(s.url))).text).toHaveLength(1024);
    size = 1025;
    const { err } = await failure(httpJson(base(s.url)), 'too_large');
    expect(err.status).toBe(503);
    expect(err.message).toBe('answer larger than 1024 bytes');
  });

  it('a declared content-length over the limit is refused at the head, the connection cut long before the body is sent', async () => {
    const total = 32 * 1024 * 1024;
    let sent = 0;
    let closed = false;
    const s = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (!closed && sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      res.on('close', () => (closed = true));
      pump();
    });
    await failure(httpJson(base(s.url, { maxBodyBytes: 64 * 1024 })), 'too_large');
    await waitFor(() => closed, { timeoutMs: 2_000, message: 'the server to see the connection closed' });
    expect(sent).toBeLessThan(total / 2);
  });

  it('an endless chunked body is cut once past the limit (no content-length to go by)', async () => {
    let sent = 0;
    let closed = false;
    const s = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = () => {
        while (!closed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      res.on('close', () => (closed = true));
      pump();
    });
    const { err } = await failure(httpJson(base(s.url, { maxBodyBytes: 256 * 1024 })), 'too_large');
    expect(err.status).toBe(200);
    await waitFor(() => closed, { timeoutMs: 2_000, message: 'the server to see the connection closed' });
    expect(sent).toBeLessThan(16 * 1024 * 1024);
  });
});

describe('one deadline for the whole exchange, and the socket goes with it', () => {
  it('a server that never answers: timeout at the deadline, and the socket is destroyed', async () => {
    const s = await serve('http', () => undefined); // holds every request
    const { err, ms } = await failure(httpJson(base(s.url, { timeoutMs: 300 })), 'timeout');
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(1_500);
    expect(err.errno).toBe('ETIMEDOUT');
    expect(err.status).toBeUndefined();
    // The server sees the client hang up: nothing is left open waiting for an answer.
    await waitFor(() => s.open.size === 0, { timeoutMs: 1_000, message: 'the held connection to close' });
  });

  it('a pooled keep-alive socket is destroyed on timeout too, not returned to the pool', async () => {
    const s = await serve('http', () => undefined);
    const agent = httpJsonAgent('http:');
    agents.push(agent);
    await failure(httpJson(base(s.url, { timeoutMs: 200, agent })), 'timeout');
    await waitFor(() => s.open.size === 0, { timeoutMs: 1_000, message: 'the held connection to close' });
    expect(Object.keys(agent.freeSockets)).toEqual([]);
  });

  it('headers then a stalled body: timeout, carrying the status', async () => {
    const s = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 100 });
      res.write('{"a":');
    });
    const { err } = await failure(httpJson(base(s.url, { timeoutMs: 300 })), 'timeout');
    expect(err.status).toBe(200);
    await waitFor(() => s.open.size === 0, { timeoutMs: 1_000, message: 'the stalled connection to close' });
  });

  it('a body dripped a byte every 40 ms never lets the call outlive its deadline (total, not idle)', async () => {
    const s = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const drip = setInterval(() => res.write(' '), 40);
      res.on('close', () => clearInterval(drip));
    });
    const { ms } = await failure(httpJson(base(s.url, { timeoutMs: 400, maxBodyBytes: 1_000_000 })), 'timeout');
    expect(ms).toBeLessThan(1_500);
    await waitFor(() => s.open.size === 0, { timeoutMs: 1_000, message: 'the dripping connection to close' });
  });

  it('a TCP server that accepts but never completes the TLS handshake: the deadline covers connect and TLS', async () => {
    const raw = await rawServer(() => undefined);
    await failure(httpJson(base(`https://127.0.0.1:${raw.port}`, { timeoutMs: 300, tls: { ca: ca.certPem } })), 'timeout');
    await waitFor(() => raw.open.size === 0, { timeoutMs: 1_000, message: 'the half-open TLS connection to close' });
  });

  it('an abort signal ends the call at once and destroys its socket', async () => {
    const s = await serve('http', () => undefined);
    const ac = new AbortController();
    const p = httpJson(base(s.url, { timeoutMs: 5_000, signal: ac.signal }));
    await waitFor(() => s.requests === 1, { timeoutMs: 1_000, message: 'the request to arrive' });
    ac.abort();
    const { ms } = await failure(p, 'aborted');
    expect(ms).toBeLessThan(2_000);
    await waitFor(() => s.open.size === 0, { timeoutMs: 1_000, message: 'the aborted connection to close' });
  });
});

describe('broken answers', () => {
  it('malformed JSON: json() throws not_json, with the status, without quoting the body', async () => {
    const s = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"token":"${SECRET}"`);
    });
    const res = await httpJson(base(s.url));
    expect(res.status).toBe(200);
    const { err } = await failure(Promise.resolve().then(() => res.json()), 'not_json');
    expect(err.status).toBe(200);
    expect(err.cause).toBeUndefined();
  });

  it('a connection cut in the middle of the body: cut_off, with the status', async () => {
    const s = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      res.write('{"a":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const { err } = await failure(httpJson(base(s.url)), 'cut_off');
    expect(err.status).toBe(200);
  });

  it('a closed port is unreachable, naming ECONNREFUSED', async () => {
    const s = await serve('http', () => undefined);
    const url = s.url;
    await s.close();
    const { err } = await failure(httpJson(base(url)), 'unreachable');
    expect(err.errno).toBe('ECONNREFUSED');
    expect(err.message).toBe('unreachable (ECONNREFUSED)');
  });
});

describe('TLS: always verified; mTLS', () => {
  it('the right CA is accepted; another CA with the same name, or the default roots, are refused before the request is sent', async () => {
    const s = await serve('https', (_req, res) => sendJson(res, 200, { ok: true }));
    expect((await httpJson(base(s.url, { tls: { ca: ca.certPem } }))).json()).toEqual({ ok: true });
    expect(s.requests).toBe(1);
    const { err } = await failure(httpJson(base(s.url, { tls: { ca: foreignCa.certPem } })), 'unreachable');
    expect(err.errno).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT|CERT_SIGNATURE_FAILURE/);
    await failure(httpJson(base(s.url)), 'unreachable');
    await failure(httpJson(base(s.url, { agent: httpJsonAgent('https:', { ca: foreignCa.certPem }) })), 'unreachable');
    expect(s.requests).toBe(1);
  });

  it('an agent that would not verify is refused outright', async () => {
    const s = await serve('https', (_req, res) => sendJson(res, 200, { ok: true }));
    const lax = new HttpsAgent({ rejectUnauthorized: false });
    agents.push(lax);
    await expect(httpJson(base(s.url, { agent: lax }))).rejects.toThrow(/rejectUnauthorized/);
    expect(s.requests).toBe(0);
  });

  it('a client certificate is presented (one-shot and pooled); without one a server that requires it refuses the handshake', async () => {
    let peer: string | undefined;
    const s = await serve(
      'https',
      (req, res) => {
        peer = String((req.socket as TLSSocket).getPeerCertificate().subject?.CN);
        sendJson(res, 200, { ok: true });
      },
      { requestCert: true, rejectUnauthorized: true, ca: clientCa.certPem },
    );
    await httpJson(base(s.url, { tls: { ca: ca.certPem, cert: clientTls.certPem, key: clientTls.keyPem } }));
    expect(peer).toBe('leash-client-7');
    peer = undefined;
    const agent = httpJsonAgent('https:', { ca: ca.certPem, cert: clientTls.certPem, key: clientTls.keyPem });
    agents.push(agent);
    await httpJson(base(s.url, { agent }));
    expect(peer).toBe('leash-client-7');
    await failure(httpJson(base(s.url, { tls: { ca: ca.certPem } })), 'unreachable');
    // A certificate from a CA the server does not trust is refused too.
    const stranger = clientCert(foreignCa, 'stranger');
    await failure(httpJson(base(s.url, { tls: { ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem } })), 'unreachable');
    expect(s.requests).toBe(2);
  });
});

describe('keep-alive agent owned by the caller', () => {
  it('calls share one connection; destroy() closes it', async () => {
    const s = await serve('https', (_req, res) => sendJson(res, 200, { ok: true }));
    const agent = httpJsonAgent('https:', { ca: ca.certPem });
    agents.push(agent);
    for (let i = 0; i < 3; i++) await httpJson(base(s.url, { agent }));
    expect(s.connections).toBe(1);
    expect(s.open.size).toBe(1);
    agent.destroy();
    await waitFor(() => s.open.size === 0, { timeoutMs: 1_000, message: 'the pooled connection to close' });
  });

  it('a pooled connection the server dropped while idle is retried once on a fresh one', async () => {
    // Answers the first request of each connection, then drops the connection when a second one comes.
    let answered = 0;
    const raw = await rawServer((sock) => {
      let n = 0;
      sock.on('data', () => {
        if (++n === 1) {
          answered++;
          sock.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: keep-alive\r\n\r\n{"ok":true}');
        } else sock.destroy();
      });
    });
    const agent = httpJsonAgent('http:');
    agents.push(agent);
    const url = `http://127.0.0.1:${raw.port}`;
    expect((await httpJson(base(url, { agent }))).json()).toEqual({ ok: true });
    expect((await httpJson(base(url, { agent }))).json()).toEqual({ ok: true });
    expect(raw.connections()).toBe(2);
    expect(answered).toBe(2);
  });
});

describe('no secret in anything thrown', () => {
  it('a bearer token and a JSON body never appear in any failure (message, stack, String, JSON, cause chain)', async () => {
    const secretCall = (url: string, over: Partial<HttpJsonRequest> = {}): HttpJsonRequest =>
      base(url, { method: 'POST', headers: { authorization: `Bearer ${SECRET}`, 'x-api-key': SECRET }, json: { token: SECRET }, ...over });
    // Servers that echo the secret back in what they answer.
    const echo = (req: IncomingMessage, body: Buffer) => `${req.headers.authorization} ${body.toString()} ${SECRET}`;
    const big = await serve('http', (req, res, body) => {
      res.writeHead(500);
      res.end(echo(req, body).repeat(200));
    });
    await failure(httpJson(secretCall(big.url)), 'too_large');
    const garbage = await serve('http', (req, res, body) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(`{"x": ${echo(req, body)}`);
    });
    const r = await httpJson(secretCall(garbage.url));
    await failure(Promise.resolve().then(() => r.json()), 'not_json');
    // A short answer is quoted whole by JSON.parse's own message: it must not be kept.
    const short = await serve('http', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(SECRET_PART);
    });
    const r2 = await httpJson(secretCall(short.url));
    await failure(Promise.resolve().then(() => r2.json()), 'not_json');
    const held = await serve('http', () => undefined);
    await failure(httpJson(secretCall(held.url, { timeoutMs: 200 })), 'timeout');
    const cut = await serve('http', (req, res, body) => {
      res.writeHead(200, { 'content-length': 10_000 });
      res.write(echo(req, body));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    await failure(httpJson(secretCall(cut.url, { maxBodyBytes: 100_000 })), 'cut_off');
    // A server that answers something that is not HTTP, quoting the secret (the parser error keeps the raw bytes).
    const notHttp = await rawServer((sock) => sock.once('data', (d) => sock.end(`${SECRET} ${d.toString()}\r\n\r\n`)));
    await failure(httpJson(secretCall(`http://127.0.0.1:${notHttp.port}`)), 'unreachable');
    const tls = await serve('https', () => undefined);
    await failure(httpJson(secretCall(tls.url, { tls: { ca: foreignCa.certPem } })), 'unreachable');
    const closed = await serve('http', () => undefined);
    const closedUrl = closed.url;
    await closed.close();
    await failure(httpJson(secretCall(closedUrl)), 'unreachable');
    const ac = new AbortController();
    const aborted = httpJson(secretCall(held.url, { signal: ac.signal }));
    ac.abort();
    await failure(aborted, 'aborted');
    // A header value Node refuses (a newline) fails before anything is sent, without the value.
    await failure(httpJson(secretCall(held.url, { headers: { authorization: `Bearer ${SECRET}\r\nx: y` } })), 'unreachable');
  });
});
