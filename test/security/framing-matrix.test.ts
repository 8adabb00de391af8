import { createServer, type IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { rawPairs, rawRequest } from '../helpers/security-net.js';

/**
 * Request framing / smuggling, as a class: every method × every framing trick × every
 * Connection trick, sent as raw bytes by a hostile agent, with a pipelined follow-up on
 * the same agent connection and then a probe request on a fresh one. The route's pool
 * has ONE keep-alive socket, so any byte leash let through unframed would be parsed by
 * the upstream as (the start of) the next request — which the follow-up or the probe
 * would complete with leash's Host and credential.
 *
 * For every case the strict upstream (Node's own parser) must have parsed exactly the
 * requests leash meant to send — no extra one, no path outside the allow list, no parse
 * error — each with exactly one credential, leash's framing and a byte-exact body; and the
 * agent must get either the upstream's answers or one leash 400 that ends the connection.
 */
const SECRET = 'sk-framing-4be1c0d9a77f2e63';
const BEARER = `Bearer ${SECRET}`;

interface Parsed {
  method: string;
  url: string;
  rawHeaders: string[];
  body: string | undefined;
}

/** A strict upstream: records every request the moment its headers parse, and every parse error. */
async function strictUpstream(): Promise<Upstream & { seen: Parsed[]; parseErrors: string[] }> {
  const seen: Parsed[] = [];
  const parseErrors: string[] = [];
  const server = createServer();
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    parseErrors.push(err.code ?? 'error');
    socket.destroy();
  });
  const up = await startUpstream((req: IncomingMessage, res) => {
    const entry: Parsed = { method: req.method ?? '', url: req.url ?? '', rawHeaders: [...req.rawHeaders], body: undefined };
    seen.push(entry);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      entry.body = Buffer.concat(chunks).toString('latin1');
      // An empty body keeps every answer (HEAD included) trivially framed for the raw client.
      res.writeHead(200, { 'content-length': '0', 'x-upstream-url': req.url ?? '' });
      res.end();
    });
  }, server);
  return { ...up, seen, parseErrors };
}

const SMUGGLED = 'GET /v1/files HTTP/1.1\r\nx-swallow: ';
const chunk = (payload: string) => `${payload.length.toString(16)}\r\n${payload}\r\n0\r\n\r\n`;

/** How the agent frames (or mis-frames) its body. `valid: false` = leash (or Node) must refuse it. */
interface Variant {
  name: string;
  headers: string[];
  body: string;
  /** What the upstream must receive as body when forwarded. */
  payload: string;
  hasBody: boolean;
  valid: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'no body', headers: [], body: '', payload: '', hasBody: false, valid: true },
  { name: 'Content-Length: 0', headers: ['Content-Length: 0'], body: '', payload: '', hasBody: false, valid: true },
  { name: 'Content-Length body', headers: ['Content-Length: 5'], body: 'hello', payload: 'hello', hasBody: true, valid: true },
  { name: 'Content-Length body = smuggled request', headers: [`Content-Length: ${SMUGGLED.length}`], body: SMUGGLED, payload: SMUGGLED, hasBody: true, valid: true },
  { name: 'chunked body', headers: ['Transfer-Encoding: chunked'], body: chunk('hello'), payload: 'hello', hasBody: true, valid: true },
  { name: 'chunked body = smuggled request', headers: ['Transfer-Encoding: chunked'], body: chunk(SMUGGLED), payload: SMUGGLED, hasBody: true, valid: true },
  { name: 'TE mixed case ChUnKeD', headers: ['transfer-ENCODING: ChUnKeD'], body: chunk('hello'), payload: 'hello', hasBody: true, valid: true },
  { name: 'TE gzip, chunked', headers: ['Transfer-Encoding: gzip, chunked'], body: chunk('hello'), payload: '', hasBody: true, valid: false },
  { name: 'TE identity, chunked', headers: ['Transfer-Encoding: identity, chunked'], body: chunk('hello'), payload: '', hasBody: true, valid: false },
  { name: 'TE chunked, identity', headers: ['Transfer-Encoding: chunked, identity'], body: chunk('hello'), payload: '', hasBody: true, valid: false },
  { name: 'TE twice (chunked + chunked)', headers: ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], body: chunk('hello'), payload: '', hasBody: true, valid: false },
  { name: 'Content-Length and Transfer-Encoding', headers: ['Content-Length: 5', 'Transfer-Encoding: chunked'], body: chunk('hello'), payload: '', hasBody: true, valid: false },
  { name: 'two differing Content-Length', headers: ['Content-Length: 5', 'Content-Length: 6'], body: 'hello!', payload: '', hasBody: true, valid: false },
];

/** Connection header tricks: each tries to make leash drop a framing or routing header. */
const CONNECTION_TRICKS: (string | undefined)[] = [
  undefined,
  'content-length',
  'transfer-encoding',
  'host',
  'keep-alive, Content-Length, Transfer-Encoding, Host',
];

const METHODS = ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST', 'PUT', 'PATCH'];
const NO_BODY = new Set(['HEAD']);

interface Case {
  id: string;
  label: string;
  method: string;
  variant: Variant;
  connection: string | undefined;
  forwarded: boolean;
}

const CASES: Case[] = [];
for (const method of METHODS) {
  for (const variant of VARIANTS) {
    for (const connection of CONNECTION_TRICKS) {
      const id = `c${CASES.length}`;
      CASES.push({
        id,
        label: `${method} · ${variant.name} · Connection: ${connection ?? '(none)'}`,
        method,
        variant,
        connection,
        forwarded: variant.valid && !(variant.hasBody && NO_BODY.has(method)),
      });
    }
  }
}

let up: Awaited<ReturnType<typeof strictUpstream>>;
let leash: RunningSidecar;
let leashPort: number;

beforeAll(async () => {
  up = await strictUpstream();
  const route = {
    upstream: `${up.url}/base`,
    credential: { env: 'KEY' },
    inject: { header: 'authorization', format: 'Bearer {{credential}}' },
    allow: ['* /v1/models/**'],
    maxSockets: 1,
  };
  leash = await startSidecar({ routes: { api: route } }, { env: { KEY: SECRET } });
  leashPort = Number(new URL(leash.url).port);
});

afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

/** Invariants every request the upstream parsed must satisfy, whatever the case. */
function checkUpstreamRequest(r: Parsed): void {
  const pairs = rawPairs(r.rawHeaders);
  const values = (n: string) => pairs.filter(([name]) => name === n).map(([, v]) => v);
  expect(r.url.startsWith('/base/v1/models/'), `upstream path ${r.url}`).toBe(true);
  expect(values('authorization')).toEqual([BEARER]);
  expect(values('host')).toEqual([new URL(up.url).host]);
  const te = values('transfer-encoding');
  const cl = values('content-length');
  expect(te.length + cl.length, 'at most one framing header').toBeLessThanOrEqual(1);
  if (te.length) expect(te).toEqual(['chunked']);
  if (r.body) expect(te.length + cl.length, 'a body is always framed').toBe(1);
  for (const c of values('connection')) expect(c.toLowerCase()).not.toMatch(/content-length|transfer-encoding|host/);
}

describe('request framing matrix (strict upstream, one pooled keep-alive socket)', () => {
  it.each(CASES.map((c) => [c.label, c] as const))('%s', async (_label, c) => {
    up.seen.length = 0;
    up.parseErrors.length = 0;
    const head = [
      `${c.method} /api/v1/models/${c.id} HTTP/1.1`,
      'Host: leash',
      'Authorization: Bearer agent-own-token',
      ...(c.connection ? [`Connection: ${c.connection}`] : []),
      ...c.variant.headers,
    ].join('\r\n');
    const followUp = `GET /api/v1/models/${c.id}-follow HTTP/1.1\r\nHost: leash\r\n\r\n`;
    const agent = await rawRequest(leashPort, `${head}\r\n\r\n${c.variant.body}${followUp}`, {
      expectResponses: c.forwarded ? 2 : undefined,
      timeoutMs: 2_000,
    });

    // A probe on a fresh agent connection: leash reuses its single upstream socket for it.
    const probe = await fetch(`${leash.url}/api/v1/models/${c.id}-probe`);
    expect(probe.status).toBe(200);
    expect(probe.headers.get('x-upstream-url')).toBe(`/base/v1/models/${c.id}-probe`);

    // What the upstream parsed first: that is the security property.
    const expected = [
      ...(c.forwarded
        ? [
            { method: c.method, url: `/base/v1/models/${c.id}`, body: c.variant.payload },
            { method: 'GET', url: `/base/v1/models/${c.id}-follow`, body: '' },
          ]
        : []),
      { method: 'GET', url: `/base/v1/models/${c.id}-probe`, body: '' },
    ];
    expect(up.parseErrors).toEqual([]);
    const show = (r: { method: string; url: string; body: string | undefined }) => `${r.method} ${r.url} body=${JSON.stringify(r.body)}`;
    expect(up.seen.map(show)).toEqual(expected.map(show));
    for (const r of up.seen) checkUpstreamRequest(r);

    if (c.forwarded) {
      expect(agent.responses.map((r) => r.status)).toEqual([200, 200]);
      expect(agent.responses.map((r) => r.header('x-upstream-url'))).toEqual([`/base/v1/models/${c.id}`, `/base/v1/models/${c.id}-follow`]);
    } else {
      // One leash error, and the connection is closed: the follow-up is never answered.
      // (Checked on the raw bytes: an answer to HEAD has a Content-Length but no body.)
      expect(agent.raw.match(/^HTTP\/1\.1 \d{3}/gm)).toEqual(['HTTP/1.1 400']);
      expect(agent.raw.toLowerCase()).toContain('\r\nx-leash-error: leash_bad_request\r\n');
      expect(agent.closed).toBe(true);
    }
  });
});

describe('pipelined requests on one agent connection', () => {
  it.each(METHODS.filter((m) => !NO_BODY.has(m)))('%s with a body, then a denied path, then an allowed one: only the allowed ones reach the upstream', async (method) => {
    up.seen.length = 0;
    const bytes =
      `${method} /api/v1/models/p1 HTTP/1.1\r\nHost: l\r\nContent-Length: ${SMUGGLED.length}\r\nConnection: content-length\r\n\r\n${SMUGGLED}` +
      'GET /api/v1/files HTTP/1.1\r\nHost: l\r\n\r\n' +
      'GET /api/v1/models/p2 HTTP/1.1\r\nHost: l\r\n\r\n';
    const agent = await rawRequest(leashPort, bytes, { expectResponses: 3, timeoutMs: 2_000 });
    expect(agent.responses.map((r) => r.status)).toEqual([200, 403, 200]);
    expect(agent.responses[1]!.header('x-leash-error')).toBe('leash_denied');
    expect(up.seen.map((r) => [r.method, r.url, r.body])).toEqual([
      [method, '/base/v1/models/p1', SMUGGLED],
      ['GET', '/base/v1/models/p2', ''],
    ]);
    for (const r of up.seen) checkUpstreamRequest(r);
  });
});

describe('method and URL override headers never reach the upstream', () => {
  const OVERRIDES: [string, string][] = [
    ['X-HTTP-Method-Override', 'DELETE'],
    ['X-HTTP-Method', 'DELETE'],
    ['X-Method-Override', 'DELETE'],
    ['X-Original-URL', '/v1/files'],
    ['X-Rewrite-URL', '/v1/files'],
  ];
  it.each(OVERRIDES.flatMap(([name, value]) => [[name, value, name] as const, [name, value, name.toUpperCase()] as const]))(
    '%s: %s (sent as %s) is removed',
    async (name, value, sentAs) => {
      up.seen.length = 0;
      const agent = await rawRequest(leashPort, `POST /api/v1/models/o HTTP/1.1\r\nHost: l\r\n${sentAs}: ${value}\r\n${name}: ${value}\r\nContent-Length: 2\r\n\r\n{}`, {
        expectResponses: 1,
      });
      expect(agent.responses[0]?.status).toBe(200);
      expect(up.seen).toHaveLength(1);
      const names = rawPairs(up.seen[0]!.rawHeaders).map(([n]) => n);
      expect(names).not.toContain(name.toLowerCase());
      expect(up.seen[0]!.method).toBe('POST');
      expect(up.seen[0]!.body).toBe('{}');
    },
  );
});

describe('empty Transfer-Encoding list members (RFC 9110 §5.6.1: ignored), which Node frames as chunked', () => {
  it.each([
    ['leading comma', ['Transfer-Encoding: , chunked']],
    ['an empty line before', ['Transfer-Encoding: ', 'Transfer-Encoding: chunked']],
  ])('%s: forwarded as plain chunked, the body byte-exact, the pipelined follow-up its own request', async (_name, te) => {
    up.seen.length = 0;
    up.parseErrors.length = 0;
    const bytes =
      `POST /api/v1/models/te-empty HTTP/1.1\r\nHost: l\r\n${te.join('\r\n')}\r\n\r\n${chunk(SMUGGLED)}` +
      'GET /api/v1/models/te-empty-follow HTTP/1.1\r\nHost: l\r\n\r\n';
    const agent = await rawRequest(leashPort, bytes, { expectResponses: 2, timeoutMs: 2_000 });
    expect(agent.responses.map((r) => r.status)).toEqual([200, 200]);
    expect(up.parseErrors).toEqual([]);
    expect(up.seen.map((r) => [r.method, r.url, r.body])).toEqual([
      ['POST', '/base/v1/models/te-empty', SMUGGLED],
      ['GET', '/base/v1/models/te-empty-follow', ''],
    ]);
    for (const r of up.seen) checkUpstreamRequest(r);
    expect(rawPairs(up.seen[0]!.rawHeaders).filter(([n]) => n === 'transfer-encoding')).toEqual([['transfer-encoding', 'chunked']]);
  });
});
