import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, sleep, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Hostile request targets and framing, sent over raw sockets so no client normalises
 * them first. The route allows every method and path (`* /**`), so the allowlist is no
 * defence here: only target parsing and Node's parser stand between these bytes and the
 * upstream, which must receive nothing (or, for smuggling, at most the legitimate request).
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-hostile-5d1e0c9b8a7f6e5d4c3b';
let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = await startRecordingUpstream();
  leash = await startSidecar(
    {
      routes: {
        openai: {
          upstream: `${up.url}/base`,
          credential: { env: 'KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['* /**'],
        },
      },
    },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});
beforeEach(() => {
  up.seen.length = 0;
});

const get = (target: string, method = 'GET') => `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;

type Expectation = { status: 400 | 404; type: 'leash_bad_request' | 'leash_no_route' };
const BAD: Expectation = { status: 400, type: 'leash_bad_request' };
const NO_ROUTE: Expectation = { status: 404, type: 'leash_no_route' };

const TARGETS: [name: string, request: () => string, expected: Expectation][] = [
  ['..', () => get('/openai/v1/../admin'), BAD],
  ['.. at the end', () => get('/openai/v1/..'), BAD],
  ['. segment', () => get('/openai/./v1/models'), BAD],
  ['.. escaping the route', () => get('/openai/../other/x'), BAD],
  ['%2e%2e', () => get('/openai/v1/%2e%2e/admin'), BAD],
  ['%2E%2e', () => get('/openai/v1/%2E%2e/admin'), BAD],
  ['.%2e', () => get('/openai/v1/.%2e/admin'), BAD],
  ['%2e.', () => get('/openai/v1/%2e./admin'), BAD],
  ['%2e', () => get('/openai/v1/%2e/admin'), BAD],
  ['%252e%252e (double-encoded)', () => get('/openai/v1/%252e%252e/admin'), BAD],
  ['%252f (double-encoded slash)', () => get('/openai/v1%252fadmin'), BAD],
  ['%255c (double-encoded backslash)', () => get('/openai/v1%255cadmin'), BAD],
  ['..; (servlet path parameter)', () => get('/openai/v1/..;/admin'), BAD],
  ['..;jsessionid=x', () => get('/openai/v1/..;jsessionid=x/admin'), BAD],
  ['%2e%2e;', () => get('/openai/v1/%2e%2e;/admin'), BAD],
  ['%2f', () => get('/openai/v1%2f..%2fadmin'), BAD],
  ['%2F', () => get('/openai/v1%2Fadmin'), BAD],
  ['%5c', () => get('/openai/v1%5c..%5cadmin'), BAD],
  ['\\ (backslash)', () => get('/openai/v1\\..\\admin'), BAD],
  ['\\ as the separator after the route', () => get('/openai\\v1'), BAD],
  ['%00', () => get('/openai/v1/models%00.json'), BAD],
  ...['%1B', '%1b%5B8m', '%07', '%0A', '%0d%0a', '%7F', '%C2%9B', '%C2%85'].map((c): [string, () => string, Expectation] => [`encoded control ${c}`, () => get(`/openai/v1/x${c}y`), BAD]),
  ['NUL byte', () => get('/openai/v1/models\0.json'), BAD],
  ['%zz (invalid percent)', () => get('/openai/v1/%zz'), BAD],
  ['truncated percent %2', () => get('/openai/v1/x%2'), BAD],
  ['lone %', () => get('/openai/v1/100%'), BAD],
  ['%c0%ae (overlong UTF-8 dot)', () => get('/openai/v1/%c0%ae%c0%ae/admin'), BAD],
  ['%e0%80%ae (overlong 3-byte dot)', () => get('/openai/v1/%e0%80%ae/admin'), BAD],
  ['%ff (invalid UTF-8)', () => get('/openai/v1/%ff'), BAD],
  ['raw non-ASCII byte', () => get('/openai/v1/caf\xe9'), BAD],
  // `..`, `/`, `\`, `%` once a server applies NFKC, or Windows' best-fit code-page conversion
  ['%EF%BC%8E%EF%BC%8E (fullwidth dots: ".." under NFKC)', () => get('/openai/v1/%EF%BC%8E%EF%BC%8E/admin'), BAD],
  ['%E2%80%A5 (two dot leader: ".." under NFKC)', () => get('/openai/v1/%E2%80%A5/admin'), BAD],
  ['%EF%BC%8F (fullwidth slash)', () => get('/openai/v1%EF%BC%8Fadmin'), BAD],
  ['%EF%BC%BC (fullwidth backslash)', () => get('/openai/v1/a%EF%BC%BC..%EF%BC%BCadmin'), BAD],
  ['%EF%BC%85 (fullwidth percent: an escape decoded again)', () => get('/openai/v1/%EF%BC%852e%EF%BC%852e/admin'), BAD],
  ['%E2%88%95 (division slash: "/" by best fit)', () => get('/openai/v1%E2%88%95admin'), BAD],
  ['%C2%A5 (yen sign: "\\" in Japanese code pages)', () => get('/openai/v1%C2%A5..%C2%A5admin'), BAD],
  ['tab in the path', () => get('/openai/v1/a\tb'), BAD],
  ['CONNECT host:443', () => `CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n`, BAD],
  ['CONNECT to the upstream itself', () => `CONNECT 127.0.0.1:${up.port} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`, BAD],
  ['OPTIONS *', () => get('*', 'OPTIONS'), BAD],
  ['TRACE (an upstream implementing it would echo the credential back)', () => get('/openai/v1/models', 'TRACE'), BAD],
  ['a fragment in the path', () => get('/openai/v1/models#/admin'), BAD],
  ['a fragment in the query', () => get('/openai/v1/models?x=1#y'), BAD],
  ['absolute-form to the upstream', () => get(`http://127.0.0.1:${up.port}/openai/v1/models`), BAD],
  ['absolute-form to leash itself', () => get(`http://127.0.0.1:${port}/openai/v1/models`), BAD],
  ['absolute-form https', () => get('https://api.openai.com/openai/v1/models'), BAD],
  ['authority-form on GET', () => get(`127.0.0.1:${up.port}`), BAD],
  ['no route', () => get('/nosuch/v1/models'), NO_ROUTE],
  ['root', () => get('/'), NO_ROUTE],
  ['only slashes', () => get('///'), NO_ROUTE],
  ['route name in another case', () => get('/OpenAI/v1/models'), NO_ROUTE],
  ['encoded dot-dot in place of the route', () => get('/%2e%2e/openai/v1/models'), BAD],
];

describe('hostile request targets are refused, never forwarded', () => {
  it.each(TARGETS)('%s', async (_name, request, expected) => {
    const ex = await rawRequest(port, request());
    const res = ex.responses[0];
    expect(res?.status, ex.raw).toBe(expected.status);
    expect(res?.header('x-leash-error')).toBe(expected.type);
    expect(res?.header('content-type')).toMatch(/^application\/json/);
    const body = res?.json() as { error: { type: string; message: string } };
    expect(body.error.type).toBe(expected.type);
    expect(typeof body.error.message).toBe('string');
    expect(ex.raw).not.toContain(SECRET);
    await sleep(20);
    expect(up.seen).toEqual([]);
  });

  it('a control request on the same route is forwarded (the table above is not failing for another reason)', async () => {
    const ex = await rawRequest(port, get('/openai/v1/models/gpt-4o%3Amini?x=%2e%2e'));
    expect(ex.responses[0]?.status).toBe(200);
    expect(up.seen.map((r) => r.url)).toEqual(['/base/v1/models/gpt-4o%3Amini?x=%2e%2e']);
    expect(up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });
});

/**
 * Request smuggling. Each payload is one legitimate-looking request followed by a
 * smuggled `GET /openai/admin`. Node's parser answers 400 or closes; whatever happens,
 * the upstream may see at most the legitimate request and never the smuggled one.
 */
const SMUGGLED = 'GET /openai/admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
const SMUGGLING: [name: string, payload: string][] = [
  ['CL.TE', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${5 + SMUGGLED.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['TE.CL', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${(SMUGGLED.length + 0).toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`],
  ['two Content-Length', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
  ['Content-Length list', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0, ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
  ['Content-Length with sign', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +0\r\n\r\n${SMUGGLED}`],
  ['obfuscated TE (xchunked)', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: xchunked\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
  ['TE chunked then identity', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['TE with space before colon', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding : chunked\r\nContent-Length: ${5 + SMUGGLED.length}\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['obs-fold header', `GET /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Folded: a\r\n b\r\n\r\n${SMUGGLED}`],
  ['obs-fold Transfer-Encoding', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: ${5 + SMUGGLED.length}\r\n\r\n0\r\n\r\n${SMUGGLED}`],
  ['bare LF line endings', `GET /openai/v1/legit HTTP/1.1\nHost: 127.0.0.1\nX-A: 1\n\n${SMUGGLED}`],
  ['bare LF hiding a request in a header', `GET /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\n\nGET /openai/admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`],
  ['bare CR in a header', `GET /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\rContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
  ['bad chunk size', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${SMUGGLED}\r\n0\r\n\r\n`],
  ['chunk size with extension trickery', `POST /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0;ext="\r\n${SMUGGLED}"\r\n\r\n`],
  ['NUL in a header value', `GET /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\0b\r\n\r\n${SMUGGLED}`],
  ['space in the header name', `GET /openai/v1/legit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent Length: 5\r\n\r\n${SMUGGLED}`],
];

describe('request smuggling never gets a second request past leash', () => {
  it.each(SMUGGLING)('%s', async (_name, payload) => {
    const ex = await rawRequest(port, payload, { timeoutMs: 1_000 });
    await sleep(50);
    const urls = up.seen.map((r) => r.url);
    expect(urls, `upstream saw ${JSON.stringify(urls)}; leash answered ${JSON.stringify(ex.raw.slice(0, 300))}`).not.toContain('/base/admin');
    expect(urls.every((u) => u === '/base/v1/legit')).toBe(true);
    expect(urls.length).toBeLessThanOrEqual(1);
    // A legitimate request that did go through had no body carrying the smuggled one.
    for (const r of up.seen) expect(r.body).not.toContain('/openai/admin');
    // Whatever leash answered, it did not answer a second request (the smuggled one).
    expect(ex.responses.length).toBeLessThanOrEqual(1);
    for (const res of ex.responses) {
      expect([200, 400]).toContain(res.status);
      if (res.status === 400) expect(res.header('x-leash-error')).toBe('leash_bad_request');
    }
  });

  it('a pipelined second request is a separate request and passes the allowlist on its own (control)', async () => {
    const ex = await rawRequest(port, `GET /openai/v1/one HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /openai/v1/two HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(ex.responses.map((r) => r.status)).toEqual([200, 200]);
    expect(up.seen.map((r) => r.url)).toEqual(['/base/v1/one', '/base/v1/two']);
    expect(up.seen.every((r) => r.headers.authorization === `Bearer ${SECRET}`)).toBe(true);
  });
});
