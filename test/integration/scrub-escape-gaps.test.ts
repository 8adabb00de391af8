import { afterEach, describe, expect, it } from 'vitest';
import { Scrubber } from '../../src/sidecar/proxy/scrub.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/**
 * Found triaging scrub.ts's mutation survivors (twentieth session), fixed since: a held
 * value that contains `"` or `\` — printable ASCII, so a valid credential (a generated
 * password sent with `inject.basic`) — echoed inside a JSON string is written with JSON's
 * own escapes `\"` and `\\`. The scrubber decoded `\uXXXX` and `\/` but not these two,
 * and had no form of the value with them, so whole-value scrubbing (every 2xx/3xx header,
 * error bodies over 64 KiB) let it through whole and full scrubbing left the runs shorter
 * than 8 characters between the escapes (`Xq7"vR2\`). The value in JSON's escapes, once
 * and as JSON inside JSON, is now a form of its own.
 */
// A fake credential made up for this test: not a real key.
const PASSWORD = 'Xq7"vR2\\mK9pL4wT';
const echoed = JSON.stringify({ error: 'invalid credentials', password: PASSWORD }); // …"Xq7\"vR2\\mK9pL4wT"…

describe('a value holding " or \\ echoed in a JSON string', () => {
  const scrubber = new Scrubber([PASSWORD], { basicUser: 'svc' });

  it('whole-value scrubbing removes the JSON-escaped value', () => {
    expect(scrubber.whole(echoed)).toBe('{"error":"invalid credentials","password":"[REDACTED]"}');
  });

  it('full scrubbing removes all of it, not only its runs of 8 characters', () => {
    expect(scrubber.full(echoed)).toBe('{"error":"invalid credentials","password":"[REDACTED]"}');
  });

  it('JSON inside JSON (\\\\\\" and \\\\\\\\) too', () => {
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
  it('the agent does not get the password', async () => {
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
    expect(JSON.parse(body).password).not.toBe(PASSWORD);
  });
});

/**
 * The same family, fixed with it: the decoder takes every `%25` level and every escape at
 * once, so a value that itself holds an escape-like sequence (`%3f`) was decoded past its
 * own characters, and no literal form covered two levels of percent-encoding. A query
 * route sends the value percent-encoded (`Zx%253fQ7…`); an upstream that percent-encodes
 * the URL it was asked for into a `return_to` holds `Zx%25253fQ7…`. The value as the
 * decoder reads it (`Zx?Q7…`) is now a form too.
 */
const PCT_VALUE = 'Zx%3fQ7-mK9pL4wT';

describe('a value holding %XX, echoed percent-encoded twice', () => {
  const scrubber = new Scrubber([PCT_VALUE]);
  const twice = encodeURIComponent(encodeURIComponent(PCT_VALUE));

  it('(once is found)', () => {
    expect(scrubber.whole(`k=${encodeURIComponent(PCT_VALUE)}`)).toBe('k=[REDACTED]');
  });

  it('whole-value scrubbing removes it', () => {
    expect(scrubber.whole(`k=${twice}&n=1`)).toBe('k=[REDACTED]&n=1');
  });

  it('full scrubbing removes all of it', () => {
    expect(scrubber.full(`k=${twice}&n=1`)).toBe('k=[REDACTED]&n=1');
  });

  it('through a sidecar: a 200 whose Set-Cookie holds the URL leash sent, percent-encoded (query injection)', async () => {
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
    expect(decodeURIComponent(decodeURIComponent(cookie))).not.toContain(PCT_VALUE);
  });
});
