import { createServer, connect, type Server, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { parseResponses } from '../helpers/security-net.js';

/**
 * The response path, case by case (the broad sweep is test/security/response-fuzz.test.ts):
 * leash's own reason phrase on every inject mode, unsolicited 101s, 101 headers, secrets in
 * header names, transfer-codings leash cannot re-frame, bad statuses, 1xx interim answers.
 * Upstreams are raw `net` servers writing exact bytes; the agent reads raw bytes too.
 * (Every secret in this file is a fake test value.)
 */
const SECRET = 'sk-live-hardening-7c1e9a4b2d5f8036';
/** Mixed case all through (no 8 characters of it are one case): what a re-cased name loses. */
const MIXED = 'Hk7Qp2Wz9Rt4Mx8Ln3Vb6Jc1Fd5Gs0Ay';
const BASIC = Buffer.from(`user:${SECRET}`).toString('base64');
const FORMS = [SECRET, BASIC];

/** What the raw upstream answers: a function of the request head it read. */
let answer: (head: string) => Buffer | string = () => '';
let upstream: { server: Server; port: number };
let leash: RunningSidecar;
let port: number;

function startRaw(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const out = answer(head);
      head = '';
      // Upgrades stay open (a WebSocket lives on); everything else ends after the answer.
      socket.write(out, () => (/^HTTP\/1\.1 101 /.test(String(out)) && /upgrade: websocket/i.test(String(out)) ? undefined : socket.end()));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port })));
}

/** Sends raw bytes, returns everything received until the head of the first non-1xx answer is complete and its body read, or the connection ends. */
function exchange(bytes: string, opts: { untilHead?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within 3 s; got ${JSON.stringify(got.slice(0, 300))}`));
    }, 3_000);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (opts.untilHead ? got.includes('\r\n\r\n') : parseResponses(got).length > 0 && got.length > 0 && isComplete(got)) done();
    });
    socket.on('close', done);
    socket.on('error', done);
  });
}

function isComplete(text: string): boolean {
  const [r] = parseResponses(text);
  if (!r) return false;
  const cl = r.header('content-length');
  return cl === undefined || Buffer.byteLength(r.body) >= Number(cl);
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: leash\r\nconnection: close\r\n\r\n`;
const statusLine = (raw: string) => raw.slice(0, raw.indexOf('\r\n'));
const noSecret = (raw: string) => {
  for (const f of FORMS) expect(raw, 'the agent received a secret').not.toContain(f);
};

beforeAll(async () => {
  upstream = await startRaw();
  const common = { upstream: `http://127.0.0.1:${upstream.port}`, credential: { env: 'KEY' }, allow: ['GET /**'] };
  leash = await startSidecar(
    {
      routes: {
        h: { ...common, inject: { header: 'authorization', format: 'Bearer {{credential}}' } },
        b: { ...common, inject: { basic: { username: 'user' } } },
        q: { ...common, inject: { query: 'key' } },
        m: { ...common, credential: { env: 'MIXED' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' } },
      },
    },
    { env: { KEY: SECRET, MIXED } },
  );
  port = Number(new URL(leash.url).port);
});

afterAll(async () => {
  await leash?.stop();
  await new Promise((r) => upstream?.server.close(r));
});

/** The credential as the upstream received it, in the form the route sends. */
function echoed(head: string): string {
  return /authorization: (.*)\r\n/i.exec(head)?.[1] ?? /[?&]key=([^ &]*)/.exec(head)?.[1] ?? 'none';
}

describe('reason phrases: always the standard one, never the upstream’s', () => {
  for (const route of ['h', 'b', 'q']) {
    it(`inject mode ${route}: a 401 whose reason echoes the credential reaches the agent as "401 Unauthorized"`, async () => {
      answer = (head) => `HTTP/1.1 401 Invalid key ${echoed(head)} (${SECRET})\r\ncontent-length: 2\r\n\r\nno`;
      const raw = await exchange(get(`/${route}/v1/x`));
      expect(statusLine(raw)).toBe('HTTP/1.1 401 Unauthorized');
      noSecret(raw);
    });
  }

  it('a 200 with the secret as reason, a 299 (no standard phrase) and obs-text', async () => {
    answer = () => `HTTP/1.1 200 ${SECRET}\r\ncontent-length: 2\r\n\r\nok`;
    expect(statusLine(await exchange(get('/h/a')))).toBe('HTTP/1.1 200 OK');
    answer = () => `HTTP/1.1 299 custom ${SECRET}\r\ncontent-length: 2\r\n\r\nok`;
    expect(statusLine(await exchange(get('/h/a')))).toBe('HTTP/1.1 299 Unknown');
  });

  it('a refused WebSocket handshake (raw path) gets the standard reason too', async () => {
    answer = () => `HTTP/1.1 403 Key ${SECRET} may not\r\ncontent-length: 0\r\n\r\n`;
    const raw = await exchange(
      'GET /h/socket HTTP/1.1\r\nhost: leash\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n',
    );
    expect(statusLine(raw)).toBe('HTTP/1.1 403 Forbidden');
    noSecret(raw);
  });
});

describe('answers leash refuses with 502 leash_upstream_bad_response', () => {
  const expectBadResponse = (raw: string) => {
    const [r] = parseResponses(raw);
    expect(r?.status).toBe(502);
    expect(r?.header('x-leash-error')).toBe('leash_upstream_bad_response');
    expect((r!.json() as { error: { type: string } }).error.type).toBe('leash_upstream_bad_response');
    noSecret(raw);
  };

  it('a 101 to a request that did not ask to upgrade (it used to hang the agent)', async () => {
    answer = () => `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nset-cookie: k=${SECRET}\r\n\r\n`;
    expectBadResponse(await exchange(get('/h/v1/x')));
  });

  it('Transfer-Encoding "gzip, chunked": the body would reach the agent still gzip-coded, and unscrubbable', async () => {
    const gz = gzipSync(`{"error":"invalid key ${SECRET}"}`);
    answer = () => Buffer.concat([Buffer.from(`HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: gzip, chunked\r\n\r\n${gz.length.toString(16)}\r\n`), gz, Buffer.from('\r\n0\r\n\r\n')]);
    expectBadResponse(await exchange(get('/h/v1/x')));
  });

  it('on a WebSocket upgrade: a refusal with status 000, and a 101 with DEL in a header', async () => {
    const upgrade =
      'GET /h/socket HTTP/1.1\r\nhost: leash\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n';
    answer = () => `HTTP/1.1 000 Key ${SECRET}\r\ncontent-length: 0\r\n\r\n`;
    expectBadResponse(await exchange(upgrade));
    answer = () => `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-bad: a\x7fb\r\n\r\n`;
    expectBadResponse(await exchange(upgrade));
  });

  it('status 000 and a reason with DEL (each used to end the process); the sidecar keeps serving', async () => {
    answer = () => `HTTP/1.1 000 Zero\r\ncontent-length: 0\r\n\r\n`;
    expectBadResponse(await exchange(get('/h/v1/x')));
    answer = () => `HTTP/1.1 401 Bad\x7fKey ${SECRET}\r\ncontent-length: 0\r\n\r\n`;
    const raw = await exchange(get('/b/v1/x'));
    expect(statusLine(raw)).toBe('HTTP/1.1 401 Unauthorized');
    noSecret(raw);
    answer = () => 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
    expect(parseResponses(await exchange(get('/q/v1/x')))[0]?.body).toBe('ok');
  });
});

describe('headers', () => {
  it('a header whose name holds the secret is dropped (200 and 401); the others are kept', async () => {
    for (const status of ['200 OK', '401 Unauthorized']) {
      answer = () => `HTTP/1.1 ${status}\r\nx-${SECRET}: 1\r\n${SECRET}: 2\r\nx-kept: yes\r\ncontent-length: 0\r\n\r\n`;
      const raw = await exchange(get('/h/v1/x'));
      expect(statusLine(raw)).toBe(`HTTP/1.1 ${status}`);
      expect(parseResponses(raw)[0]?.header('x-kept')).toBe('yes');
      expect(raw).not.toContain('[REDACTED]:');
      noSecret(raw);
    }
  });

  it('a 101 on a WebSocket upgrade: every Set-Cookie (an array) is scrubbed, a header named after the secret dropped', async () => {
    answer = () =>
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n` +
      `set-cookie: a=${SECRET}\r\nset-cookie: b=${SECRET}; Path=/\r\nx-${SECRET}: 1\r\nx-hint: ${SECRET.slice(3, 15)}\r\n\r\n`;
    const raw = await exchange(
      'GET /q/socket HTTP/1.1\r\nhost: leash\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n',
      { untilHead: true },
    );
    expect(statusLine(raw)).toBe('HTTP/1.1 101 Switching Protocols');
    expect(raw).toContain('set-cookie: a=[REDACTED]\r\n');
    expect(raw).toContain('set-cookie: b=[REDACTED]; Path=/\r\n');
    expect(raw).toContain('x-hint: [REDACTED]\r\n');
    expect(raw).toMatch(/sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
    noSecret(raw);
  });

  it('a header name holding the secret in another letter case is dropped too (Go canonical, upper, lower; 200, 401 and a 101)', async () => {
    // Go's net/http writes every name canonicalised: `X-` + the key becomes X-Hk7qp2wz9….
    const canonical = (n: string) => n.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1).toLowerCase()).join('-');
    const folded = MIXED.toLowerCase();
    const leaks = (raw: string) => raw.toLowerCase().includes(folded);
    for (const status of ['200 OK', '401 Unauthorized']) {
      for (const name of [canonical(`x-key-${MIXED}`), `X-${MIXED.toUpperCase()}`, `x-${folded}`, `${folded}`]) {
        answer = () => `HTTP/1.1 ${status}\r\n${name}: 1\r\nx-kept: yes\r\ncontent-length: 0\r\n\r\n`;
        const raw = await exchange(get('/m/v1/x'));
        expect(statusLine(raw)).toBe(`HTTP/1.1 ${status}`);
        expect(parseResponses(raw)[0]?.header('x-kept'), name).toBe('yes');
        expect(leaks(raw), `${status} ${name}: ${raw}`).toBe(false);
      }
    }
    // A fragment of it, re-cased, in a name of an error answer (values get fragment scrubbing there).
    answer = () => `HTTP/1.1 401 Unauthorized\r\nX-Hint-${canonical(MIXED.slice(4, 20))}: 1\r\ncontent-length: 0\r\n\r\n`;
    expect((await exchange(get('/m/v1/x'))).toLowerCase()).not.toContain(MIXED.slice(4, 20).toLowerCase());
    // Node hands a 101's names over lower-cased: the secret exactly as issued, in a name, came out so.
    answer = () =>
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n` +
      `x-${MIXED}: 1\r\nX-Tok-${canonical(MIXED)}: 2\r\nx-kept: yes\r\n\r\n`;
    const raw = await exchange(
      'GET /m/socket HTTP/1.1\r\nhost: leash\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n',
      { untilHead: true },
    );
    expect(statusLine(raw)).toBe('HTTP/1.1 101 Switching Protocols');
    expect(raw).toContain('x-kept: yes\r\n');
    expect(leaks(raw), raw).toBe(false);
  });

  it('Location and Refresh are fully scrubbed on a 2xx and a 3xx (masked and fragment forms too)', async () => {
    answer = () =>
      `HTTP/1.1 201 Created\r\nlocation: https://elsewhere.example/cb?key=${SECRET.slice(0, 6)}****${SECRET.slice(-4)}\r\nrefresh: 0; url=/x?k=${SECRET.slice(2, 14)}\r\ncontent-length: 0\r\n\r\n`;
    const r = parseResponses(await exchange(get('/h/v1/x')))[0]!;
    expect(r.header('location')).toBe('https://elsewhere.example/cb?key=[REDACTED]');
    expect(r.header('refresh')).toBe('0; url=/x?k=[REDACTED]');
    answer = () => `HTTP/1.1 302 Found\r\nlocation: /next?key=${SECRET}\r\nrefresh: 1; url=/n?key=${SECRET}\r\ncontent-length: 0\r\n\r\n`;
    const r2 = parseResponses(await exchange(get('/q/v1/x')))[0]!;
    expect(r2.header('location')).toBe('/q/next?key=[REDACTED]');
    expect(r2.header('refresh')).toBe('1; url=/n?key=[REDACTED]');
  });

  it('an upstream cannot pose as leash: its x-leash-* headers are dropped', async () => {
    answer = () => 'HTTP/1.1 403 Forbidden\r\nx-leash-error: leash_denied\r\ncontent-length: 0\r\n\r\n';
    const r = parseResponses(await exchange(get('/h/v1/x')))[0]!;
    expect(r.status).toBe(403);
    expect(r.header('x-leash-error')).toBeUndefined();
  });
});

describe('1xx interim answers on normal requests', () => {
  it('100, 102 and 103 Early Hints before the answer: the final answer arrives whole; interim headers are not relayed', async () => {
    answer = () =>
      `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x?key=${SECRET}>; rel=preload\r\n\r\n` +
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
    const raw = await exchange(get('/q/v1/x'));
    expect(statusLine(raw)).toBe('HTTP/1.1 200 OK');
    expect(parseResponses(raw)[0]?.body).toBe('ok');
    noSecret(raw);
  });
});
