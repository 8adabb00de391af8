import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { closedPort, decodedText, rawRequest, within, type RawResponse } from '../helpers/proxy-util.js';

/**
 * One sidecar, driven through every kind of answer it gives — success, denial, upstream
 * echoes of the key in error bodies, headers and redirects, upstream failure, admin
 * endpoints — with everything the agent and the operator could see collected in one
 * place, then searched for the secrets in every form leash sends them.
 */
const API_SECRET = 'sk-abcScAnT0pS3cr3tV4lu3xYzwxyz';
const API_MASKED = `${API_SECRET.slice(0, 6)}*****${API_SECRET.slice(-4)}`;
const BASIC_USER = 'svc-scan';
const BASIC_SECRET = 'basic-scan-P4ssw0rd-q1w2e3r4';
const BASIC_B64 = Buffer.from(`${BASIC_USER}:${BASIC_SECRET}`).toString('base64');
const QUERY_SECRET = 'qs-Scan+Key/With=Specials-77aa';
const QUERY_ENC = encodeURIComponent(QUERY_SECRET);

const FORBIDDEN: Record<string, string> = {
  'api secret': API_SECRET,
  'api secret (masked)': API_MASKED,
  'basic secret': BASIC_SECRET,
  'basic base64(user:secret)': BASIC_B64,
  'query secret': QUERY_SECRET,
  'query secret (url-encoded)': QUERY_ENC,
};

let upstream: Upstream | undefined;
let leash: RunningSidecar | undefined;
afterAll(async () => {
  await leash?.stop();
  await upstream?.close();
});

function upstreamHandler(base: () => string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    const auth = req.headers.authorization ?? '';
    const path = url.split('?')[0];
    req.resume();
    switch (path) {
      case '/v1/ok':
        // A success that echoes the credential it received in a response header.
        res.writeHead(200, { 'content-type': 'application/json', 'x-echo-authorization': auth, 'x-request-id': 'r1' });
        res.end('{"ok":true}');
        return;
      case '/v1/stream':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-echo-authorization': auth });
        res.end('data: {"a":1}\n\ndata: [DONE]\n\n');
        return;
      case '/v1/unauth':
        res.writeHead(401, { 'content-type': 'application/json', 'x-debug': API_SECRET, 'www-authenticate': `Bearer error="invalid_token", token="${API_MASKED}"` });
        res.end(
          JSON.stringify({
            error: { message: `Incorrect API key provided: ${API_SECRET}. Did you mean ${API_MASKED}? Received ${auth}`, code: 'invalid_api_key' },
          }),
        );
        return;
      case '/v1/unauth-gzip':
        res.writeHead(401, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        res.end(gzipSync(JSON.stringify({ error: { message: `bad key ${API_SECRET}` } })));
        return;
      case '/v1/big-error': {
        // Larger than leash holds in memory: scrubbed as a stream, a secret straddling chunks included.
        res.writeHead(500, { 'content-type': 'text/plain' });
        const filler = 'x'.repeat(16 * 1024 - 7);
        for (let i = 0; i < 8; i++) res.write(`${filler}${API_SECRET}`);
        res.end(`tail ${auth}`);
        return;
      }
      case '/v1/redirect-same':
        res.writeHead(302, { location: `${base()}/v1/next?token=${API_SECRET}`, 'content-type': 'text/plain' });
        res.end();
        return;
      case '/v1/redirect-away':
        res.writeHead(307, { location: `https://elsewhere.example/callback?k=${API_SECRET}`, 'content-type': 'text/plain' });
        res.end();
        return;
      case '/v1/echo-auth':
        // Basic route: echoes what it got, in body and header.
        res.writeHead(403, { 'content-type': 'text/plain', 'x-seen': auth });
        res.end(`forbidden for ${auth} (${Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString()})`);
        return;
      case '/v1/ok-basic':
        res.writeHead(200, { 'content-type': 'text/plain', 'x-seen': auth });
        res.end('ok');
        return;
      case '/v1/bounce':
        // Query route: redirect to the URL exactly as received (it carries the injected key),
        // with the body a typical framework writes for a redirect.
        res.writeHead(302, { location: url, 'content-type': 'text/html' });
        res.end(`<p>Found. Redirecting to <a href="${url}">${url}</a></p>`);
        return;
      case '/v1/bad-query':
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `invalid request ${url}` }));
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
    }
  };
}

interface Seen {
  what: string;
  text: string;
}

function describeResponse(what: string, r: RawResponse): Seen {
  const headers = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) headers.push(`${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}`);
  return { what, text: `${r.status}\n${headers.join('\n')}\n\n${decodedText(r)}` };
}

describe('no secret in anything the agent or the operator sees', () => {
  it('across success, denial, echoes, redirects, failures, admin endpoints and logs', async () => {
    let upstreamBase = '';
    upstream = await startUpstream(upstreamHandler(() => upstreamBase));
    upstreamBase = upstream.url;
    const down = await closedPort();
    const allow = ['GET /v1/**', 'POST /v1/**'];
    leash = await startSidecar(
      {
        routes: {
          api: { upstream: upstream.url, credential: { env: 'API_KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow },
          basic: { upstream: upstream.url, credential: { env: 'BASIC_PASS' }, inject: { basic: { username: BASIC_USER } }, allow },
          q: { upstream: upstream.url, credential: { env: 'QUERY_KEY' }, inject: { query: 'key' }, allow },
          down: { upstream: `http://127.0.0.1:${down}`, credential: { env: 'API_KEY' }, inject: { header: 'x-api-key' }, allow },
          gone: { upstream: upstream.url, credential: { env: 'NOT_SET' }, inject: { header: 'x-api-key' }, allow },
        },
      },
      { env: { API_KEY: API_SECRET, BASIC_PASS: BASIC_SECRET, QUERY_KEY: QUERY_SECRET } },
    );
    const seen: Seen[] = [];
    const statuses: Record<string, number> = {};
    const agent = async (what: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) => {
      const r = await rawRequest(`${leash!.url}${path}`, { ...init, headers: { 'accept-encoding': 'gzip, deflate, br', ...init.headers } });
      statuses[what] = r.status;
      seen.push(describeResponse(what, r));
      return r;
    };
    const admin = async (what: string, path: string) => {
      const r = await rawRequest(`${leash!.adminUrl}${path}`);
      statuses[what] = r.status;
      seen.push(describeResponse(what, r));
      return r;
    };

    await agent('success', '/api/v1/ok');
    await agent('success with the agent’s own key', '/api/v1/ok', { headers: { authorization: 'Bearer agent-own' } });
    await agent('sse', '/api/v1/stream');
    await agent('post', '/api/v1/ok', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"x":1}' });
    await agent('denied', '/api/v2/admin');
    await agent('denied method', '/api/v1/ok', { method: 'DELETE' });
    await agent('no route', '/nope/v1/ok');
    await agent('bad path', '/api/v1/%2e%2e/secret');
    await agent('401 echo', '/api/v1/unauth');
    await agent('401 echo gzip', '/api/v1/unauth-gzip');
    await agent('big 500 echo', '/api/v1/big-error');
    const same = await agent('redirect same origin', '/api/v1/redirect-same');
    await agent('redirect away', '/api/v1/redirect-away');
    await agent('basic 403 echo', '/basic/v1/echo-auth');
    await agent('basic success echo header', '/basic/v1/ok-basic');
    const bounce = await agent('query redirect', '/q/v1/bounce?x=1&key=agent-own');
    await agent('query 400 echo', '/q/v1/bad-query?x=2');
    await agent('upstream down', '/down/v1/ok');
    await agent('credential unavailable', '/gone/v1/ok');
    // A WebSocket upgrade to a path that is denied, and one the upstream refuses (no ws server).
    for (const [what, path] of [
      ['ws denied', '/api/v2/socket'],
      ['ws refused upstream', '/api/v1/ok'],
    ] as const) {
      const r = await within(
        new Promise<Seen>((resolve) => {
          const ws = new WebSocket(`${leash!.url.replace(/^http/, 'ws')}${path}`);
          ws.on('unexpected-response', (_req, res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ what, text: `${res.statusCode}\n${JSON.stringify(res.rawHeaders)}\n\n${body}` }));
          });
          ws.on('open', () => {
            ws.terminate();
            resolve({ what, text: 'opened' });
          });
          ws.on('error', (err) => resolve({ what, text: String(err) }));
        }),
        3_000,
        what,
      );
      seen.push(r);
    }
    await admin('status', '/status');
    await admin('metrics', '/metrics');
    await admin('readyz', '/readyz');
    await admin('healthz', '/healthz');
    await admin('admin 404', '/nope');

    // The paths were really exercised (a scan of nothing proves nothing).
    expect(statuses).toMatchObject({
      success: 200,
      sse: 200,
      denied: 403,
      'no route': 404,
      'bad path': 400,
      '401 echo': 401,
      '401 echo gzip': 401,
      'big 500 echo': 500,
      'redirect same origin': 302,
      'redirect away': 307,
      'basic 403 echo': 403,
      'basic success echo header': 200,
      'query redirect': 302,
      'query 400 echo': 400,
      'upstream down': 502,
      'credential unavailable': 503,
      status: 200,
      metrics: 200,
      readyz: 503,
    });
    expect(same.headers.location).toMatch(/^\/api\/v1\/next\?token=/);
    expect(bounce.headers.location).toMatch(/^\/q\/v1\/bounce\?/);
    const body401 = seen.find((s) => s.what === '401 echo')!.text;
    expect(body401).toContain('Incorrect API key provided: [REDACTED]');
    expect(seen.find((s) => s.what === 'big 500 echo')!.text.length).toBeGreaterThan(8 * 16 * 1024);
    expect(seen.find((s) => s.what === 'success')!.text).toContain('[REDACTED]'); // the echoed header was there, scrubbed

    const logs = leash.logs.lines.join('\n');
    expect(leash.logs.events('request').length).toBeGreaterThanOrEqual(10);
    const places: Seen[] = [...seen, { what: 'logs', text: logs }];
    const leaks: string[] = [];
    for (const [form, value] of Object.entries(FORBIDDEN)) {
      for (const p of places) if (p.text.includes(value)) leaks.push(`${form} in ${p.what}`);
    }
    expect(leaks).toEqual([]);
  });
});
