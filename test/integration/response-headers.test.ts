import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/**
 * What the agent receives in response headers, through a real sidecar (docs/secret-hygiene.md):
 * - every response header (not only error answers) has held secrets replaced, in every
 *   form leash sends them (raw, URL-encoded for query injection, base64 user:secret for basic);
 * - error answers' headers are scrubbed fully (fragments, masked forms);
 * - a redirect to the upstream inside the route's base becomes the local /<route>/… path;
 *   any other target is left pointing where it points (leash never follows it);
 * - headers without a secret pass unchanged.
 */
const SECRET = 'sk-hdr-0123456789abcdefXYZ/+=';
const ENCODED = encodeURIComponent(SECRET);
const BASIC = Buffer.from(`user:${SECRET}`).toString('base64');
let upstream: Upstream;
let sidecar: RunningSidecar;

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname.replace(/^\/base/, '');
    const origin = `http://127.0.0.1:${upstream.port}`;
    switch (path) {
      case '/echo-ok':
        // Echoes on a 200: a header that repeats the credential, a cookie built from it, the
        // encoded and basic forms, and a harmless header.
        res.writeHead(200, {
          'x-echo': SECRET,
          'set-cookie': `sess=${SECRET}; Path=/; HttpOnly`,
          'x-echo-encoded': `k=${ENCODED}`,
          'x-echo-basic': `Basic ${BASIC}`,
          'x-harmless': 'hello; world',
          'content-type': 'text/plain',
        });
        return void res.end('fine');
      case '/echo-error':
        res.writeHead(401, { 'www-authenticate': `Bearer error="invalid_token", key="${SECRET.slice(0, 6)}*****${SECRET.slice(-6)}"`, 'x-fragment': `part ${SECRET.slice(3, 15)} end` });
        return void res.end('no');
      case '/redirect-inside':
        res.writeHead(302, { location: `${origin}/base/next?page=2#top`, 'content-type': 'text/plain' });
        return void res.end();
      case '/redirect-relative':
        res.writeHead(301, { location: '/base/rel' });
        return void res.end();
      case '/redirect-base-query':
        res.writeHead(302, { location: '/base?x=1' });
        return void res.end();
      case '/redirect-outside-base':
        res.writeHead(302, { location: '/basement/x' });
        return void res.end();
      case '/redirect-elsewhere':
        res.writeHead(307, { location: 'https://elsewhere.example/callback?x=1' });
        return void res.end();
      case '/redirect-protocol-relative':
        res.writeHead(302, { location: '//elsewhere.example/x' });
        return void res.end();
      case '/redirect-backslash':
        res.writeHead(302, { location: '/\\elsewhere.example/x' });
        return void res.end();
      case '/redirect-with-credential':
        // An upstream that copies the request's query (with the injected key) into Location.
        res.writeHead(302, { location: `${origin}/base/next?${url.searchParams.toString()}` });
        return void res.end();
      default:
        res.writeHead(404);
        res.end();
    }
  });
  sidecar = await startSidecar(
    {
      routes: {
        h: { upstream: `${upstream.url}/base`, credential: { env: 'SECRET' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
        q: { upstream: `${upstream.url}/base`, credential: { env: 'SECRET' }, inject: { query: 'key' }, allow: ['GET /**'] },
        b: { upstream: `${upstream.url}/base`, credential: { env: 'SECRET' }, inject: { basic: { username: 'user' } }, allow: ['GET /**'] },
      },
    },
    { env: { SECRET } },
  );
});
afterAll(async () => {
  await sidecar?.stop();
  await upstream?.close();
});

/** Raw headers as the agent receives them (fetch would follow redirects and merge headers). */
function get(path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; raw: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${sidecar.url}${path}`, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: res.rawHeaders.join('\n') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The forms each route sends the credential in (and so must scrub when echoed). */
const FORMS: Record<string, string[]> = { h: [SECRET], q: [SECRET, ENCODED], b: [SECRET, BASIC] };
const noSecret = (raw: string, route: string) => {
  for (const form of FORMS[route]!) expect(raw).not.toContain(form);
};

describe('response headers are scrubbed on every answer, not only errors', () => {
  it.each(['h', 'q', 'b'])('a 200 echoing the credential (route %s): each form replaced, other headers intact', async (route) => {
    const r = await get(`/${route}/echo-ok`);
    expect(r.status).toBe(200);
    noSecret(r.raw, route);
    expect(r.headers['x-echo']).toBe('[REDACTED]');
    expect(r.headers['set-cookie']).toEqual(['sess=[REDACTED]; Path=/; HttpOnly']);
    expect(r.headers['x-harmless']).toBe('hello; world');
  });

  it('each injection form is scrubbed on the route that sends it', async () => {
    expect((await get('/q/echo-ok')).headers['x-echo-encoded']).toBe('k=[REDACTED]');
    // `Basic <base64 of user:secret>` is one form: the whole header value goes, scheme included.
    expect((await get('/b/echo-ok')).headers['x-echo-basic']).toBe('[REDACTED]');
  });

  it('an error answer’s headers are scrubbed fully: fragments and masked forms too', async () => {
    const r = await get('/h/echo-error');
    expect(r.status).toBe(401);
    expect(r.raw).not.toContain(SECRET.slice(3, 15));
    expect(r.raw).not.toContain(`${SECRET.slice(0, 6)}*****`);
    expect(r.headers['x-fragment']).toBe('part [REDACTED] end');
    expect(r.headers['www-authenticate']).toContain('error="invalid_token"');
  });
});

describe('redirects: what Location the agent receives', () => {
  it.each([
    ['/h/redirect-inside', '/h/next?page=2#top'],
    ['/h/redirect-relative', '/h/rel'],
    ['/h/redirect-base-query', '/h/?x=1'],
  ])('%s → back through leash: %s', async (path, expected) => {
    const r = await get(path);
    expect(r.status).toBeGreaterThanOrEqual(300);
    expect(r.headers.location).toBe(expected);
  });

  it('same origin but outside the route’s base path: the upstream URL, not a local path', async () => {
    expect((await get('/h/redirect-outside-base')).headers.location).toBe(`http://127.0.0.1:${upstream.port}/basement/x`);
  });

  it.each([
    ['/h/redirect-elsewhere', 'https://elsewhere.example/callback?x=1'],
    ['/h/redirect-protocol-relative', '//elsewhere.example/x'],
    ['/h/redirect-backslash', '/\\elsewhere.example/x'],
  ])('%s → another host is left as is (never made local, never followed): %s', async (path, expected) => {
    expect((await get(path)).headers.location).toBe(expected);
  });

  it('a Location that carries the injected credential (query injection) reaches the agent scrubbed and local', async () => {
    const r = await get('/q/redirect-with-credential');
    expect(r.status).toBe(302);
    noSecret(r.raw, 'q');
    expect(r.headers.location).toBe('/q/next?key=[REDACTED]');
  });
});
