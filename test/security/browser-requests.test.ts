import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * A browser the agent drives shares the pod's loopback: any page it opens can send requests
 * to the sidecar, which would forward them with the credential — a cross-site form post,
 * image or `no-cors` fetch (request forgery: the page cannot read the answer, but the
 * operation runs), a WebSocket handshake (no CORS at all), or, after pointing a DNS name of
 * its own at 127.0.0.1, same-origin requests whose answers it reads (DNS rebinding). The
 * requests below are shaped as Chromium sends them. None may reach the upstream; the
 * agent's own clients (no Origin, no Sec-Fetch-Site, an IP, localhost or a service name
 * as Host), a host and an origin the operator names, and a real SDK all still pass.
 */
const SECRET = 'sk-browser-5d2a9c7e1b3f40868c1d';
const NAMED_HOST = 'leash.agents.svc';
const NAMED_ORIGIN = 'https://console.example.com';

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
let adminPort: number;

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    // /v1/page?type=T answers a body with that content type (none for "-").
    const type = new URL(req.url!, 'http://x').searchParams.get('type');
    if (type !== null && type !== '-') res.setHeader('content-type', type);
    else if (type === null) res.setHeader('content-type', 'application/json');
    res.end(type === null ? '{"ok":true}' : '<script>fetch("/other-route/v1/x")</script>');
  });
  up.server.on('upgrade', (_req, socket) => socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'));
  leash = await startSidecar(
    {
      clients: { hosts: [NAMED_HOST.toUpperCase()], origins: [NAMED_ORIGIN] },
      routes: {
        api: bearerRoute(up.url, ['GET /v1/**', 'POST /v1/**'], { websocket: true }),
      },
    },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
  adminPort = Number(new URL(leash.adminUrl).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

const get = (host: string, extra = '') => `GET /api/v1/items HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;
const post = (host: string, extra = '') => `POST /api/v1/items HTTP/1.1\r\nHost: ${host}\r\n${extra}Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`;
const ws = (host: string, extra = '') =>
  `GET /api/v1/socket HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;
const local = () => `127.0.0.1:${port}`;
const site = (s: string, mode = 'no-cors', dest = 'empty') => `Sec-Fetch-Site: ${s}\r\nSec-Fetch-Mode: ${mode}\r\nSec-Fetch-Dest: ${dest}\r\n`;

/** [what, request bytes]: each a page's request; none may reach the upstream. */
const REFUSED: Array<[string, () => string]> = [
  ['a cross-site no-cors POST (form or fetch)', () => post(local(), `Origin: https://evil.example\r\n${site('cross-site')}`)],
  ['a cross-site POST from a page on another port of this host', () => post(local(), `Origin: http://127.0.0.1:3000\r\n${site('same-site', 'cors')}`)],
  ['a page on localhost', () => post(`localhost:${port}`, `Origin: http://localhost:5173\r\n${site('same-site', 'cors')}`)],
  ['an opaque origin (sandboxed frame, file:, data:)', () => post(local(), `Origin: null\r\n${site('cross-site')}`)],
  ['a cross-site image or script (no Origin on a no-cors GET)', () => get(local(), site('cross-site', 'no-cors', 'image'))],
  ['a same-site link or image', () => get(local(), site('same-site', 'no-cors', 'image'))],
  ['a cross-site WebSocket handshake', () => ws(local(), `Origin: https://evil.example\r\n${site('cross-site', 'websocket', 'websocket')}`)],
  ['a WebSocket handshake from any page, even same-origin-looking', () => ws(local(), `Origin: http://${local()}\r\n`)],
  ['DNS rebinding: a same-origin GET to the page\'s own name', () => get(`rebind.evil.example:${port}`, site('same-origin', 'cors'))],
  ['DNS rebinding: a same-origin POST (Origin is the page\'s own)', () => post(`rebind.evil.example:${port}`, `Origin: http://rebind.evil.example:${port}\r\n${site('same-origin', 'cors')}`)],
  ['DNS rebinding: a WebSocket', () => ws(`rebind.evil.example:${port}`)],
  ['DNS rebinding: a name with a trailing dot', () => get(`evil.example.:${port}`)],
  ['DNS rebinding: a public name that spells an IP', () => get(`127.0.0.1.nip.io:${port}`)],
  ['an origin that differs from a named one by port', () => post(local(), `Origin: ${NAMED_ORIGIN}:8443\r\n${site('cross-site', 'cors')}`)],
];

/** [what, request bytes]: the agent's own clients; forwarded with the credential. */
const FORWARDED: Array<[string, () => string]> = [
  ['an SDK or HTTP library (IP literal Host)', () => post(local())],
  ['localhost', () => get(`localhost:${port}`)],
  ['IPv6 loopback', () => get(`[::1]:${port}`)],
  ['a *.localhost name (browsers resolve it to loopback themselves)', () => get(`agent.localhost:${port}`)],
  ['a single-label service name (docker compose, a sidecar container name)', () => get('leash:8080')],
  ['a host the operator names, any case', () => get(`Leash.Agents.SVC:${port}`)],
  ['an origin the operator names', () => post(local(), `Origin: ${NAMED_ORIGIN}\r\n${site('cross-site', 'cors')}`)],
  ['a navigation the user typed (Sec-Fetch-Site: none)', () => get(local(), site('none', 'navigate', 'document'))],
  ['a same-origin request on a loopback Host', () => get(local(), site('same-origin', 'cors'))],
];

describe('requests from web pages never reach the upstream', () => {
  it.each(REFUSED)('%s: 403 leash_denied, nothing forwarded', async (_what, bytes) => {
    up.seen.length = 0;
    const agent = await rawRequest(port, bytes(), { expectResponses: 1 });
    expect(agent.responses[0]?.status).toBe(403);
    expect(agent.responses[0]?.body).toContain('leash_denied');
    expect(up.seen).toEqual([]);
  });

  it.each(FORWARDED)('%s: forwarded with the credential', async (_what, bytes) => {
    up.seen.length = 0;
    const agent = await rawRequest(port, bytes(), { expectResponses: 1 });
    expect(agent.responses[0]?.status).toBe(200);
    expect(up.seen).toHaveLength(1);
    expect(up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('a real SDK client (openai) is unaffected', async () => {
    up.seen.length = 0;
    const client = new OpenAI({ apiKey: 'unused', baseURL: `${leash.url}/api/v1`, maxRetries: 0 });
    await client.get('/items');
    expect(up.seen).toHaveLength(1);
    expect(up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('the admin listener answers loopback, IPs and named hosts, and refuses a rebound name', async () => {
    for (const path of ['/status', '/metrics', '/readyz']) {
      const rebound = await rawRequest(adminPort, `GET ${path} HTTP/1.1\r\nHost: rebind.evil.example:${adminPort}\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });
      expect(rebound.responses[0]?.status, path).toBe(403);
      expect(rebound.responses[0]?.body).not.toContain('leash_requests_total');
    }
    for (const host of [`127.0.0.1:${adminPort}`, `10.1.2.3:${adminPort}`, `localhost:${adminPort}`, NAMED_HOST]) {
      const ok = await rawRequest(adminPort, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });
      expect(ok.responses[0]?.status, host).toBe(200);
    }
  });

  it.each([
    ['text/html; charset=utf-8', true],
    ['TEXT/HTML', true],
    ['application/xhtml+xml', true],
    ['image/svg+xml', true],
    ['text/xml', true],
    ['application/xml', true],
    ['-', true],
    ['application/json', false],
    ['application/json; charset=utf-8', false],
    ['text/event-stream', false],
    ['text/plain', false],
    ['application/octet-stream', false],
  ])('an answer of type %s is sandboxed (a page served through leash is no origin of its own): %s', async (type, sandboxed) => {
    const agent = await rawRequest(port, get(local()).replace('/api/v1/items', `/api/v1/page?type=${encodeURIComponent(type)}`), { expectResponses: 1 });
    expect(agent.responses[0]?.status).toBe(200);
    const csp = agent.responses[0]!.header('content-security-policy');
    expect(csp === 'sandbox', `content-security-policy: ${String(csp)}`).toBe(sandboxed);
  });
});
