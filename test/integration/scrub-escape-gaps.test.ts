import { afterEach, describe, expect, it } from 'vitest';
import { Scrubber } from '../../src/sidecar/proxy/scrub.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/**
 * SOURCE BUG SUSPECTED (found triaging scrub.ts's mutation survivors): a held value that
 * contains `"` or `\` — printable ASCII, so a valid credential (a generated password sent
 * with `inject.basic`) — echoed inside a JSON string is written with JSON's own escapes
 * `\"` and `\\`. The scrubber decodes `\uXXXX` and `\/` but not these two, and has no form
 * of the value with them, so:
 * - whole-value scrubbing (every 2xx/3xx header, error bodies over 64 KiB) lets it through whole;
 * - full scrubbing (error bodies up to 64 KiB) removes only the runs of 8 or more characters
 *   between the escapes: the rest of the value (here `Xq7"vR2\`) reaches the agent.
 * Each test states what should happen, and fails on the current source.
 */
const PASSWORD = 'Xq7"vR2\\mK9pL4wT';
const echoed = JSON.stringify({ error: 'invalid credentials', password: PASSWORD }); // …"Xq7\"vR2\\mK9pL4wT"…

describe('a value holding " or \\ echoed in a JSON string (SOURCE BUG: not scrubbed)', () => {
  const scrubber = new Scrubber([PASSWORD], { basicUser: 'svc' });

  it.fails('whole-value scrubbing removes the JSON-escaped value', () => {
    expect(scrubber.whole(echoed)).toBe('{"error":"invalid credentials","password":"[REDACTED]"}');
  });

  it.fails('full scrubbing removes all of it, not only its runs of 8 characters', () => {
    expect(scrubber.full(echoed)).toBe('{"error":"invalid credentials","password":"[REDACTED]"}');
  });

  it.fails('JSON inside JSON (\\\\\\" and \\\\\\\\) too', () => {
    expect(scrubber.full(JSON.stringify(echoed))).not.toContain('Xq7');
  });
});

let upstream: Upstream | undefined;
let leash: RunningSidecar | undefined;
afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  leash = upstream = undefined;
});

describe('through a sidecar: a 401 over 64 KiB (streamed, whole-value scrubbing) echoing the basic-auth password as JSON', () => {
  it.fails('the agent does not get the password', async () => {
    upstream = await startUpstream((req, res) => {
      const [, b64] = (req.headers.authorization ?? '').split(' ');
      const password = Buffer.from(b64 ?? '', 'base64').toString().split(':').slice(1).join(':');
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid credentials', password, trace: 'x'.repeat(80 * 1024) }));
    });
    leash = await startSidecar(
      { routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { basic: { username: 'svc' } }, allow: ['GET /**'] } } },
      { env: { KEY: PASSWORD } },
    );
    const res = await fetch(`${leash.url}/api/v1/me`);
    expect(res.status).toBe(401);
    const body = await res.text();
    expect(body.length).toBeGreaterThan(64 * 1024);
    // Fails today: the body holds `"password":"Xq7\"vR2\\mK9pL4wT"`, the value in JSON's escapes.
    expect(JSON.parse(body).password).not.toBe(PASSWORD);
  });
});

/**
 * SOURCE BUG SUSPECTED, same family: the decoder takes every `%25` level and every escape
 * at once, so a value that itself holds an escape-like sequence (`%3f`) is decoded past its
 * own characters, and no literal form covers two levels of percent-encoding. A query route
 * sends the value percent-encoded (`Zx%253fQ7…`); an upstream that percent-encodes the URL
 * it was asked for into a `return_to` holds `Zx%25253fQ7…`: whole-value scrubbing misses
 * it entirely, full scrubbing leaves `Zx%25` (the fragment rule takes the rest).
 */
const PCT_VALUE = 'Zx%3fQ7-mK9pL4wT';

describe('a value holding %XX, echoed percent-encoded twice (SOURCE BUG: not scrubbed)', () => {
  const scrubber = new Scrubber([PCT_VALUE]);
  const twice = encodeURIComponent(encodeURIComponent(PCT_VALUE));

  it('(once is found)', () => {
    expect(scrubber.whole(`k=${encodeURIComponent(PCT_VALUE)}`)).toBe('k=[REDACTED]');
  });

  it.fails('whole-value scrubbing removes it', () => {
    expect(scrubber.whole(`k=${twice}&n=1`)).toBe('k=[REDACTED]&n=1');
  });

  it.fails('full scrubbing removes all of it', () => {
    expect(scrubber.full(`k=${twice}&n=1`)).toBe('k=[REDACTED]&n=1');
  });

  it.fails('through a sidecar: a 200 whose Set-Cookie holds the URL leash sent, percent-encoded (query injection)', async () => {
    upstream = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': `sso_return=${encodeURIComponent(`https://api.example.com${req.url}`)}; Path=/` });
      res.end('ok');
    });
    leash = await startSidecar(
      { routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { query: 'api_key' }, allow: ['GET /**'] } } },
      { env: { KEY: PCT_VALUE } },
    );
    const res = await fetch(`${leash.url}/api/v1/me`);
    expect(res.status).toBe(200);
    const cookie = res.headers.get('set-cookie') ?? '';
    // Fails today: decoded twice, the cookie gives back `…?api_key=Zx%3fQ7-mK9pL4wT`.
    expect(decodeURIComponent(decodeURIComponent(cookie))).not.toContain(PCT_VALUE);
  });
});
