import { connect, createServer, type Server, type Socket } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { onRequestHeads, rawRequest, sleep, type RawExchange } from '../helpers/security-net.js';

/**
 * The response path's body phase and its refusals, case by case, with the sidecar in this
 * process (the process-level sweep is test/security/response-fuzz.test.ts): error bodies in
 * every content-coding leash decodes, one it cannot (withheld), a corrupt one, binary
 * bytes, bodies past the 64 KiB buffer; a refused answer's upstream connection, its error
 * body and log line; and the raw path of a refused WebSocket handshake (its headers, body,
 * encodings, size limit, an upstream that breaks off). Upstreams are raw `net` servers
 * writing exact bytes; the agent reads raw bytes too.
 * (Every secret in this file is a fake test value.)
 */
const SECRET = 'sk-live-bodypaths-5e2a9c7b1d4f8063';
const ERROR_BODY_LIMIT = 64 * 1024;

/** What the raw upstream does with one request: it gets the head and the socket (kept open unless it ends it). */
let answer: (head: string, socket: Socket) => void = (_h, s) => void s.end();
let upstream: Server;
let upstreamPort: number;
/** Every upstream connection, in the order accepted. */
const connections: Socket[] = [];
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  upstream = createServer((socket) => {
    connections.push(socket);
    socket.on('error', () => undefined);
    onRequestHeads(socket, (head) => answer(head, socket));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as { port: number }).port;
  leash = await startSidecar(
    {
      routes: {
        h: { upstream: `http://127.0.0.1:${upstreamPort}`, credential: { env: 'KEY' }, allow: ['GET /**'], inject: { header: 'authorization', format: 'Bearer {{credential}}' } },
        hb: { upstream: `http://127.0.0.1:${upstreamPort}/api/v3`, credential: { env: 'KEY' }, allow: ['GET /**'], inject: { header: 'authorization', format: 'Bearer {{credential}}' } },
      },
    },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
});

afterAll(async () => {
  await leash?.stop();
  for (const s of connections) s.destroy();
  await new Promise((r) => upstream?.close(r));
});

const bin = (s: string) => Buffer.from(s, 'latin1');
/** The upstream writes `bytes` and ends its side. */
const writes = (bytes: Buffer | string) => (_h: string, s: Socket) => void s.end(typeof bytes === 'string' ? bin(bytes) : bytes);
const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nhost: leash\r\nconnection: close\r\n${extra}\r\n`;
const upgrade = (path: string) =>
  `GET ${path} HTTP/1.1\r\nhost: leash\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n`;
const noSecret = (x: RawExchange) => expect(x.raw, 'the agent received the secret').not.toContain(SECRET);
const expectBadResponse = (x: RawExchange, route = 'h') => {
  const r = x.responses[0];
  expect(r?.status).toBe(502);
  expect(r?.header('x-leash-error')).toBe('leash_upstream_bad_response');
  expect((r!.json() as { error: { type: string; route: string | null } }).error).toMatchObject({ type: 'leash_upstream_bad_response', route });
  noSecret(x);
};
const errorJson = `{"error":"invalid key ${SECRET}"}`;
const warnLines = () => leash.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.level === 'warn');

describe('error bodies in each content-coding leash decodes are scrubbed and sent decoded', () => {
  const codings: [string, (b: Buffer) => Buffer][] = [
    ['gzip', gzipSync],
    ['x-gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
    ['GZip', gzipSync],
  ];
  for (const [coding, encode] of codings) {
    it(`content-encoding: ${coding}`, async () => {
      const body = encode(Buffer.from(errorJson));
      answer = writes(Buffer.concat([bin(`HTTP/1.1 401 Unauthorized\r\ncontent-encoding: ${coding}\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
      const x = await rawRequest(port, get('/h/v1/x'));
      const r = x.responses[0]!;
      expect(r.status).toBe(401);
      expect(r.header('content-encoding')).toBeUndefined();
      expect(r.header('x-leash-body-withheld')).toBeUndefined();
      expect(r.body).toBe('{"error":"invalid key [REDACTED]"}');
      noSecret(x);
    });
  }

  it('an empty Content-Encoding value is identity: the body is scrubbed, not withheld', async () => {
    answer = writes(`HTTP/1.1 401 Unauthorized\r\ncontent-encoding: \r\ncontent-length: ${errorJson.length}\r\n\r\n${errorJson}`);
    const x = await rawRequest(port, get('/h/v1/x'));
    expect(x.responses[0]?.header('x-leash-body-withheld')).toBeUndefined();
    expect(x.responses[0]?.body).toBe('{"error":"invalid key [REDACTED]"}');
  });

  it('a coding leash cannot decode: the status is kept, the body withheld and said so', async () => {
    answer = writes(`HTTP/1.1 401 Unauthorized\r\ncontent-encoding: zstd\r\nx-kept: yes\r\ncontent-length: ${errorJson.length}\r\n\r\n${errorJson}`);
    const x = await rawRequest(port, get('/h/v1/x'));
    const r = x.responses[0]!;
    expect(r.status).toBe(401);
    expect(r.header('x-leash-body-withheld')).toBe('unscrubbable-encoding');
    expect(r.header('content-length')).toBe('0');
    expect(r.header('x-kept')).toBe('yes');
    expect(r.body).toBe('');
    noSecret(x);
  });

  it('a corrupt gzip error body: 502 leash_upstream_bad_response, and the sidecar keeps serving', async () => {
    answer = writes('HTTP/1.1 401 Unauthorized\r\ncontent-encoding: gzip\r\ncontent-length: 10\r\n\r\nnot-gzip!!');
    expectBadResponse(await rawRequest(port, get('/h/v1/x')));
    answer = writes('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    expect((await rawRequest(port, get('/h/v1/x'))).responses[0]?.body).toBe('ok');
  });

  it('an error body that is not UTF-8 and holds no secret reaches the agent byte for byte', async () => {
    const body = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x61, 0x62, 0x63, 0xe9]);
    answer = writes(Buffer.concat([bin(`HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/octet-stream\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
    const x = await rawRequest(port, get('/h/v1/x'));
    const r = x.responses[0]!;
    expect(r.status).toBe(500);
    expect(r.header('content-length')).toBe(String(body.length));
    // (parseResponses decodes bodies as UTF-8: the bytes are read from the raw answer.)
    expect(Buffer.from(x.raw.slice(x.raw.indexOf('\r\n\r\n') + 4), 'latin1')).toEqual(body);
  });
});

describe('error bodies past the 64 KiB buffer', () => {
  it('a body of exactly 64 KiB is held and sent whole, with its length', async () => {
    const body = `${SECRET} ${'a'.repeat(ERROR_BODY_LIMIT - SECRET.length - 1)}`;
    answer = (_h, s) => {
      s.write(`HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n`);
      // In pieces, as a network delivers it.
      for (let i = 0; i < body.length; i += 8192) s.write(body.slice(i, i + 8192));
      s.end();
    };
    const x = await rawRequest(port, get('/h/v1/x'));
    const r = x.responses[0]!;
    expect(r.body).toBe(body.replace(SECRET, '[REDACTED]'));
    expect(r.header('content-length')).toBe(String(r.body.length));
    noSecret(x);
  });

  it('a larger body starts reaching the agent before the upstream has sent all of it, scrubbed', async () => {
    const part = `${'b'.repeat(100 * 1024)} ${SECRET} `;
    let finish: () => void = () => undefined;
    answer = (_h, s) => {
      s.write(`HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: ${part.length * 2}\r\n\r\n${part}`);
      finish = () => s.end(part);
    };
    const agent = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((r) => agent.on('close', () => r()));
    agent.on('error', () => undefined);
    agent.on('data', (c: Buffer) => chunks.push(c));
    agent.write(get('/h/v1/x'));
    const received = () => chunks.reduce((n, c) => n + c.length, 0);
    for (let waited = 0; received() <= ERROR_BODY_LIMIT && waited < 2_000; waited += 25) await sleep(25);
    // Half the body is out at the upstream: more than the buffer already reached the agent.
    expect(received()).toBeGreaterThan(ERROR_BODY_LIMIT);
    finish();
    await closed;
    const raw = Buffer.concat(chunks).toString('latin1');
    expect(raw.startsWith('HTTP/1.1 500 Internal Server Error\r\n')).toBe(true);
    expect(raw).not.toContain(SECRET);
    expect(raw.split('[REDACTED]').length).toBe(3);
  });
});

describe('a refused answer', () => {
  it('answers 502 naming the route, logs the route and the problem, and closes that upstream connection', async () => {
    let first: Socket | undefined;
    // Status 000 on a kept-alive connection: complete, so only leash can refuse to reuse it.
    answer = (_h, s) => {
      first = s;
      s.write('HTTP/1.1 000 Zero\r\ncontent-length: 0\r\n\r\n');
    };
    const before = warnLines().length;
    expectBadResponse(await rawRequest(port, get('/h/v1/x')));
    const firstClosed = new Promise<boolean>((resolve) => {
      if (first!.destroyed || first!.readableEnded) return resolve(true);
      first!.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 1_500);
    });
    expect(await firstClosed, 'the refused answer’s upstream connection was kept').toBe(true);
    const logged = warnLines().slice(before);
    expect(logged.some((e) => e.route === 'h' && e.code === 'LEASH_ERR_UPSTREAM_BAD_RESPONSE' && String(e.msg).includes('invalid status code 0'))).toBe(true);
    // The next request goes out on a connection of its own.
    let second: Socket | undefined;
    answer = (_h, s) => {
      second = s;
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    };
    expect((await rawRequest(port, get('/h/v1/x'))).responses[0]?.body).toBe('ok');
    expect(second).not.toBe(first);
  });

  it('an undecodable error body whose upstream then breaks off does not cut the agent’s kept-alive connection', async () => {
    answer = (_h, s) => {
      s.write(`HTTP/1.1 401 Unauthorized\r\ncontent-encoding: zstd\r\ncontent-length: 100\r\n\r\n${SECRET.slice(0, 10)}`);
      setTimeout(() => s.destroy(), 100);
    };
    const agent = connect(port, '127.0.0.1');
    agent.on('error', () => undefined);
    let got = '';
    let closed = false;
    agent.on('data', (d: Buffer) => (got += d.toString('latin1')));
    agent.on('close', () => (closed = true));
    agent.write('GET /h/v1/x HTTP/1.1\r\nhost: leash\r\n\r\n');
    for (let waited = 0; !got.includes('\r\n\r\n') && waited < 2_000; waited += 25) await sleep(25);
    expect(got).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
    await sleep(400);
    expect(closed, 'leash cut the agent’s connection after a complete answer').toBe(false);
    answer = writes('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    got = '';
    agent.write('GET /h/v1/y HTTP/1.1\r\nhost: leash\r\nconnection: close\r\n\r\n');
    for (let waited = 0; !got.endsWith('ok') && waited < 2_000; waited += 25) await sleep(25);
    expect(got).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*ok$/);
    agent.destroy();
  });
});

describe('a refused WebSocket handshake (the raw path)', () => {
  it('a transfer-coding other than chunked: 502 leash_upstream_bad_response', async () => {
    const gz = gzipSync(errorJson);
    answer = writes(Buffer.concat([bin(`HTTP/1.1 403 Forbidden\r\ntransfer-encoding: gzip, chunked\r\n\r\n${gz.length.toString(16)}\r\n`), gz, bin('\r\n0\r\n\r\n')]));
    expectBadResponse(await rawRequest(port, upgrade('/h/socket')));
  });

  it('a status outside 200–599: 502 leash_upstream_bad_response, logged with the route', async () => {
    answer = writes('HTTP/1.1 999 Odd\r\ncontent-length: 0\r\n\r\n');
    const before = warnLines().length;
    expectBadResponse(await rawRequest(port, upgrade('/h/socket')));
    expect(warnLines().slice(before).some((e) => e.route === 'h' && e.code === 'LEASH_ERR_UPSTREAM_BAD_RESPONSE')).toBe(true);
  });

  it('relays the upstream’s headers exactly (obs-text byte for byte), drops framing and unsafe ones, and says how many it dropped', async () => {
    const body = gzipSync(errorJson);
    answer = writes(
      Buffer.concat([
        bin(`HTTP/1.1 403 Forbidden\r\nx-kept: yes\r\nx-obs: caf\u00e9\r\nx-${SECRET.slice(3, 15)}: 1\r\ncontent-encoding: gzip\r\ncontent-length: ${body.length}\r\n\r\n`),
        body,
      ]),
    );
    const before = warnLines().length;
    const x = await rawRequest(port, upgrade('/h/socket'));
    const head = x.raw.slice(0, x.raw.indexOf('\r\n\r\n') + 4);
    // The whole head: standard reason, the two safe headers as sent, leash's own framing.
    expect(head).toBe('HTTP/1.1 403 Forbidden\r\nx-kept: yes\r\nx-obs: caf\u00e9\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    // A coded body cannot be scrubbed: none is sent.
    expect(x.raw.length).toBe(head.length);
    noSecret(x);
    expect(warnLines().slice(before).some((e) => e.route === 'h' && e.dropped === 1)).toBe(true);
  });

  it('an identity-coded body is scrubbed and relayed; no headers at all is a valid head', async () => {
    answer = writes(`HTTP/1.1 403 Forbidden\r\ncontent-encoding: identity\r\ncontent-length: ${errorJson.length}\r\n\r\n${errorJson}`);
    let x = await rawRequest(port, upgrade('/h/socket'));
    expect(x.raw).toBe(`HTTP/1.1 403 Forbidden\r\ncontent-length: 34\r\nconnection: close\r\n\r\n{"error":"invalid key [REDACTED]"}`);
    answer = writes('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno');
    x = await rawRequest(port, upgrade('/h/socket'));
    expect(x.raw).toBe('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno');
  });

  it('a body of exactly 64 KiB is relayed; a larger one cuts the connection without an answer', async () => {
    const exact = 'c'.repeat(ERROR_BODY_LIMIT);
    answer = writes(`HTTP/1.1 403 Forbidden\r\ncontent-length: ${exact.length}\r\n\r\n${exact}`);
    let x = await rawRequest(port, upgrade('/h/socket'));
    expect(x.responses[0]?.status).toBe(403);
    expect(x.responses[0]?.body).toBe(exact);
    answer = writes(`HTTP/1.1 403 Forbidden\r\ncontent-length: ${ERROR_BODY_LIMIT + 1}\r\n\r\n${exact}d`);
    x = await rawRequest(port, upgrade('/h/socket'));
    expect(x.closed).toBe(true);
    expect(x.raw).toBe('');
  });

  it('an upstream that breaks off inside the body: the agent’s connection is closed at once', async () => {
    answer = (_h, s) => {
      s.write('HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\n\r\nonly ten b');
      setTimeout(() => s.destroy(), 50);
    };
    const started = Date.now();
    const x = await rawRequest(port, upgrade('/h/socket'), { timeoutMs: 2_500 });
    expect(x.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(2_000);
    noSecret(x);
  });
});

describe('Link targets leash does not bring back', () => {
  it('a same-origin path outside the base path is made absolute on the upstream; a protocol-relative one is left as sent', async () => {
    answer = writes('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlink: </elsewhere>; rel="next", <//evil.example/x>; rel="help", </api/v3/p2>; rel="last"\r\ncontent-length: 2\r\n\r\n[]');
    const x = await rawRequest(port, `GET /hb/x HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n\r\n`);
    expect(x.responses[0]?.header('link')).toBe(
      `<http://127.0.0.1:${upstreamPort}/elsewhere>; rel="next", <//evil.example/x>; rel="help", <http://127.0.0.1:${port}/hb/p2>; rel="last"`,
    );
  });
});
