import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { deferred, pollUntil, rawRequest, within, type Deferred, type RawResponse } from '../helpers/proxy-util.js';

/**
 * Scrubbing through a real sidecar (file credential, header injection) and a real upstream:
 * - every value the route held stays scrubbed after rotations, whether or not the request
 *   that gets the echo carried it (a slow request started with A, two rotations during it;
 *   then a fresh request whose error echoes A);
 * - encoded echoes (JSON \u, percent, double percent, base64url, `Bearer <value>`) in an
 *   error body, error headers, a normal response header, Location and Refresh.
 */
const A = 'file-secret-A-7f3a9c2e5b1d44aa';
const B = 'file-secret-B-0c6e1f8d2a4b99cc';
const C = 'file-secret-C-5d2b7a1e9f3c08ee';
const PROSE = 'See https://docs.example.com/errors#auth for help (request req_8f3a2c).';

const hex2 = (c: number) => c.toString(16).toUpperCase().padStart(2, '0');
const ENCODINGS: Record<string, (v: string) => string> = {
  'json \\u every char': (v) => [...v].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
  'json \\u only dashes': (v) => v.replace(/-/g, '\\u002D'),
  'percent every byte': (v) => [...Buffer.from(v)].map((b) => `%${hex2(b)}`).join(''),
  'double percent': (v) => [...Buffer.from(v)].map((b) => `%25${hex2(b).toLowerCase()}`).join(''),
  base64url: (v) => Buffer.from(v).toString('base64url'),
  'base64 padded': (v) => Buffer.from(v).toString('base64'),
  'Bearer <value>': (v) => `Bearer ${v}`,
  'base64 of Bearer <value>': (v) => Buffer.from(`Bearer ${v}`).toString('base64'),
};

/** The secret is findable by decoding the text independently of leash's code. */
function leaks(text: string, secret: string): boolean {
  let d = text;
  for (let i = 0; i < 3; i++) {
    d = d.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))).replace(/\\u([0-9A-Fa-f]{4})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  }
  if (d.includes(secret)) return true;
  for (const run of d.match(/[A-Za-z0-9+/_-]{8,}/g) ?? []) {
    const std = run.replace(/-/g, '+').replace(/_/g, '/');
    for (let skip = 0; skip < 4; skip++) {
      const cut = std.slice(skip);
      if (Buffer.from(cut.slice(0, Math.floor(cut.length / 4) * 4), 'base64').toString('latin1').includes(secret.slice(2, -2))) return true;
    }
  }
  return false;
}

/** Everything the agent got: status line parts, every header, the body. */
const seen = (r: RawResponse): string => `${r.status}\n${r.rawHeaders.join('\n')}\n\n${r.body.toString('utf8')}`;

let upstream: Upstream;
let leash: RunningSidecar;
let dir: string;
let path: string;
/** What the next echo answers contain, and the gate a slow request waits on. */
let echo: string[] = [];
let slowArrived: Deferred<string>;
let releaseSlow: Deferred;

function handler(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const url = req.url ?? '';
  const auth = req.headers.authorization ?? '';
  const route = url.split('?')[0];
  const echoBody = () => `{"error":{"message":"Incorrect API key provided: ${echo.join(' / ')}. ${PROSE}","type":"invalid_request_error"}}`;
  const echoHeaders = () => Object.fromEntries(echo.map((e, i) => [`x-echo-${i}`, `key=${e}; ok`]));
  switch (route) {
    case '/v1/whoami':
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ auth }));
      return;
    case '/v1/slow':
      slowArrived.resolve(auth);
      void releaseSlow.promise.then(() => res.writeHead(401, { 'content-type': 'application/json', ...echoHeaders() }).end(echoBody()));
      return;
    case '/v1/echo':
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': `Bearer error="invalid_token", token="${echo[0]}"`, ...echoHeaders() }).end(echoBody());
      return;
    case '/v1/ok':
      res.writeHead(200, { 'content-type': 'application/json', ...echoHeaders() }).end('{"ok":true}');
      return;
    case '/v1/redirect':
      res
        .writeHead(302, {
          location: `https://login.example.com/continue?key=${echo[0]}&page=2`,
          refresh: `0; url=https://login.example.com/r?token=${echo[1] ?? echo[0]}&next=%2Fhome`,
          'content-type': 'text/plain',
        })
        .end(`Redirecting to https://login.example.com/continue?key=${echo[0]}&page=2`);
      return;
    default:
      res.writeHead(404).end();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'leash-scrub-'));
  path = join(dir, 'token');
  writeFileSync(path, `${A}\n`);
  upstream = await startUpstream(handler);
  leash = await startSidecar({
    routes: {
      filed: { upstream: upstream.url, credential: { file: path }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /v1/**'] },
    },
  });
});

afterAll(async () => {
  releaseSlow?.resolve();
  await leash?.stop();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rotateTo(value: string): Promise<void> {
  writeFileSync(join(dir, '.token.tmp'), value);
  renameSync(join(dir, '.token.tmp'), path);
  await pollUntil(
    async () => {
      const r = await rawRequest(`${leash.url}/filed/v1/whoami`);
      return (JSON.parse(r.body.toString()) as { auth: string }).auth === `Bearer ${value}` ? true : undefined;
    },
    3_000,
    'the upstream to receive the rotated value',
  );
}

describe('every value the route held is scrubbed, not just the current one and its predecessor', () => {
  let slow: Promise<RawResponse>;
  // A slow request sent with A, then two rotations while it waits: A → B → C.
  beforeAll(async () => {
    slowArrived = deferred<string>();
    releaseSlow = deferred();
    slow = rawRequest(`${leash.url}/filed/v1/slow`);
    expect(await within(slowArrived.promise, 3_000, 'the slow request to reach the upstream')).toBe(`Bearer ${A}`);
    await rotateTo(B);
    await rotateTo(C);
  });

  it('the slow request’s error echoing A (which it carried) and B is scrubbed', async () => {
    echo = [A, B];
    releaseSlow.resolve();
    const r = await slow;
    expect(r.status).toBe(401);
    const text = seen(r);
    for (const v of [A, B]) expect(leaks(text, v), text).toBe(false);
    expect(text).toContain(`Incorrect API key provided: [REDACTED] / [REDACTED]. ${PROSE}`);
    expect(r.headers['x-echo-0']).toBe('key=[REDACTED]; ok');
    expect(r.headers['x-echo-1']).toBe('key=[REDACTED]; ok');
  });

  it('a request sent with C whose error (body and headers) echoes A, two rotations old, is scrubbed', async () => {
    echo = [A, B, C];
    const r = await rawRequest(`${leash.url}/filed/v1/echo`);
    expect(r.status).toBe(401);
    const text = seen(r);
    for (const v of [A, B, C]) expect(leaks(text, v), text).toBe(false);
    expect(r.body.toString()).toBe(`{"error":{"message":"Incorrect API key provided: [REDACTED] / [REDACTED] / [REDACTED]. ${PROSE}","type":"invalid_request_error"}}`);
    expect(r.headers['x-echo-0']).toBe('key=[REDACTED]; ok');
    expect(r.headers['www-authenticate']).toBe('Bearer error="invalid_token", token="[REDACTED]"');
  });

  it('A in a header of a successful answer is scrubbed', async () => {
    echo = [A];
    const r = await rawRequest(`${leash.url}/filed/v1/ok`);
    expect(r.status).toBe(200);
    expect(r.headers['x-echo-0']).toBe('key=[REDACTED]; ok');
  });
});

describe('encoded echoes are scrubbed through the sidecar, ordinary text is left alone', () => {
  // C current, A held before it (as after the test above; done again so this runs alone too).
  beforeAll(() => rotateTo(C));
  for (const [name, encode] of Object.entries(ENCODINGS)) {
    it(`${name}: error body and headers, a normal header, Location and Refresh`, async () => {
      // Current value C and the old A, both encoded.
      echo = [encode(C), encode(A)];
      const err = await rawRequest(`${leash.url}/filed/v1/echo`);
      const ok = await rawRequest(`${leash.url}/filed/v1/ok`);
      const redirect = await rawRequest(`${leash.url}/filed/v1/redirect`);
      expect([err.status, ok.status, redirect.status]).toEqual([401, 200, 302]);
      for (const r of [err, ok, redirect]) {
        const text = seen(r);
        for (const v of [A, C]) expect(leaks(text, v), text).toBe(false);
        for (const e of echo) expect(text).not.toContain(e);
      }
      expect(err.body.toString()).toBe(`{"error":{"message":"Incorrect API key provided: [REDACTED] / [REDACTED]. ${PROSE}","type":"invalid_request_error"}}`);
      expect(ok.headers['x-echo-0']).toBe('key=[REDACTED]; ok');
      expect(ok.headers['x-echo-1']).toBe('key=[REDACTED]; ok');
      expect(redirect.headers.location).toBe('https://login.example.com/continue?key=[REDACTED]&page=2');
      expect(redirect.headers.refresh).toBe('0; url=https://login.example.com/r?token=[REDACTED]&next=%2Fhome');
      expect(redirect.body.toString()).toBe('Redirecting to https://login.example.com/continue?key=[REDACTED]&page=2');
    });
  }
});
