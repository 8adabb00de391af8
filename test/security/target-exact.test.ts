import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, sleep, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * What the allow rules match is what the upstream receives, byte for byte (target.ts).
 * Found by an attacker's pass: `GET /gh/v1/repos/x#/issues` matched `GET /v1/repos/*∕issues`
 * (`#` taken as a path character), and the upstream was sent `GET /v1/repos/x` with the
 * credential, because http-proxy re-parsed the path with url.parse, which cuts at `#`; the
 * same re-parse percent-escaped `'` and `{`, and its join turned `http:/` into `http://`.
 * So: every placement of `#` in every shape of allowed request (methods, upgrades, query
 * routes) is refused and nothing reaches the upstream; every printable character in a
 * segment and in the query either is refused or arrives exactly as sent.
 */
// Made up for this test (no vendor issues keys of this shape): what must reach only the upstream.
const SECRET = 'sk-exact-7e1d0c9b8a7f6e5d4c3b2a19';
let up: RecordingUpstream;
/** Upgrade requests the upstream saw (its 'request' handler never sees them). */
const upgrades: string[] = [];
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = await startRecordingUpstream();
  up.server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgrades.push(req.url ?? '');
    socket.destroy();
  });
  const route = (allow: string[], inject: Record<string, unknown> = { header: 'authorization', format: 'Bearer {{credential}}' }) => ({
    upstream: `${up.url}/base`,
    credential: { env: 'KEY' },
    inject,
    allow,
  });
  leash = await startSidecar(
    {
      routes: {
        gh: route(['GET /v1/repos/*/issues', 'DELETE /v1/vector_stores/*/files/*', 'POST /v1/chat/completions']),
        q: route(['GET /v1/models/**'], { query: 'key' }),
        pub: route(['* /**']),
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
  upgrades.length = 0;
});

const request = (method: string, target: string, extra = '') =>
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}${method === 'POST' ? 'Content-Length: 2\r\n\r\n{}' : '\r\n'}`;
const UPGRADE = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

/** Allowed requests (each forwarded as it is: the control below) to put a `#` into. */
const ALLOWED: { method: string; target: string; upgrade?: boolean }[] = [
  { method: 'GET', target: '/gh/v1/repos/x/issues' },
  { method: 'DELETE', target: '/gh/v1/vector_stores/vs_1/files/f' },
  { method: 'POST', target: '/gh/v1/chat/completions' },
  { method: 'GET', target: '/q/v1/models/gpt?x=1' },
  { method: 'GET', target: '/gh/v1/repos/x/issues', upgrade: true },
];

/** Every target made from an allowed one by putting `#` at one position (after the route's slash), or replacing one character with it. */
function withFragments(target: string): string[] {
  const out = new Set<string>();
  for (let i = 1; i <= target.length; i++) {
    out.add(`${target.slice(0, i)}#${target.slice(i)}`);
    if (i < target.length && target[i] !== '/') out.add(`${target.slice(0, i)}#${target.slice(i + 1)}`);
  }
  // The attack as found: a refused prefix, then the allowed tail after `#`.
  out.add(target.replace(/\/issues$/, '#/issues').replace(/\/files\/f$/, '#/files/f'));
  return [...out].filter((t) => t.includes('#'));
}

describe('a "#" anywhere in the request target is refused and nothing is forwarded', () => {
  it('control: each allowed request is forwarded, with the credential, to exactly its path', async () => {
    for (const a of ALLOWED) {
      const ex = await rawRequest(port, request(a.method, a.target, a.upgrade ? UPGRADE : ''));
      if (a.upgrade) {
        await sleep(50);
        expect(upgrades).toEqual(['/base/v1/repos/x/issues']);
      } else {
        expect(ex.responses[0]?.status, `${a.method} ${a.target}: ${ex.raw}`).toBe(200);
        const seen = up.seen.at(-1)!;
        const path = a.target.replace(/^\/[^/]+/, '/base');
        expect(seen.url).toBe(a.target.startsWith('/q/') ? `${path}&key=${SECRET}` : path);
      }
    }
  });

  for (const a of ALLOWED) {
    const targets = withFragments(a.target);
    it(`${a.method} ${a.target}${a.upgrade ? ' (WebSocket upgrade)' : ''}: all ${targets.length} placements`, async () => {
      for (const t of targets) {
        const ex = await rawRequest(port, request(a.method, t, a.upgrade ? UPGRADE : ''));
        const res = ex.responses[0];
        // Node's parser may refuse a `#` in some places itself: 400 either way, never forwarded.
        expect(res?.status, `${t}: ${ex.raw}`).toBe(400);
        expect(res?.header('x-leash-error')).toBe('leash_bad_request');
        expect(ex.raw).not.toContain(SECRET);
      }
      await sleep(50);
      expect(up.seen.map((s) => `${s.method} ${s.url}`)).toEqual([]);
      expect(upgrades).toEqual([]);
    });
  }

  it('an encoded "#" (%23) is an ordinary character: forwarded as sent, and matched as one', async () => {
    const ok = await rawRequest(port, request('GET', '/gh/v1/repos/x%23y/issues'));
    expect(ok.responses[0]?.status).toBe(200);
    expect(up.seen.map((s) => s.url)).toEqual(['/base/v1/repos/x%23y/issues']);
    const refused = await rawRequest(port, request('GET', '/gh/v1/repos/x%23/issues/more'));
    expect(refused.responses[0]?.status).toBe(403);
  });
});

const PRINTABLE = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i));

describe('the upstream receives the path and query exactly as matched', () => {
  // Characters with a meaning of their own in a target: `/` and `?` split it, `#` is refused
  // above, `%` starts an escape (covered by hostile-paths.test.ts and below), `\` is refused,
  // `.` makes the segment `..` below (a dot-segment, refused), and `;` starts the segment
  // `;;`, which servlet containers drop as path parameters (path-parameters.test.ts).
  const REFUSED_IN_PATH = new Set(['#', '\\', '.', ';']);
  const REFUSED_IN_QUERY = new Set(['#']);
  const SPLITTERS = new Set(['/', '?', '%']);

  it('every printable ASCII character in a path segment and in the query', async () => {
    const forwarded: string[] = [];
    const expected: string[] = [];
    for (const c of PRINTABLE) {
      if (SPLITTERS.has(c)) continue;
      for (const [target, refused] of [
        [`/pub/v1/a${c}b/${c}${c}/end${c}`, REFUSED_IN_PATH.has(c)],
        [`/pub/v1/x?q=${c}&${c}${c}=1&r=a${c}`, REFUSED_IN_QUERY.has(c)],
      ] as const) {
        const ex = await rawRequest(port, request('GET', target));
        const status = ex.responses[0]?.status;
        if (refused) {
          expect(status, `${target}: ${ex.raw}`).toBe(400);
        } else {
          expect(status, `${target}: ${ex.raw}`).toBe(200);
          expected.push(target.replace('/pub', '/base'));
          forwarded.push(up.seen.at(-1)!.url);
        }
      }
    }
    expect(forwarded).toEqual(expected);
    expect(forwarded.length).toBeGreaterThan(150);
  });

  it.each([
    ['percent-escapes, as sent', '/pub/v1/%7Bid%7D/%27q%27?x=%22%3C%3E', 200],
    ['"http:/" in the path (http-proxy would send "http://")', '/pub/v1/fetch/http:/example.com', 400],
    ['"https:/" in the path', '/pub/v1/fetch/https:/example.com', 400],
    ['"http:/" inside a segment', '/pub/v1/xhttp:/y', 400],
    ['"HTTP:/" (the rewrite is case-sensitive: forwarded as sent)', '/pub/v1/HTTP:/y', 200],
    ['"http:" at the end of a segment, not followed by "/"', '/pub/v1/http:', 200],
    ['"http:/" in the query (never rewritten)', '/pub/v1/x?u=http:/example.com', 200],
  ])('%s', async (_name, target, status) => {
    const ex = await rawRequest(port, request('GET', target));
    expect(ex.responses[0]?.status, ex.raw).toBe(status);
    await sleep(20);
    expect(up.seen.map((s) => s.url)).toEqual(status === 200 ? [target.replace('/pub', '/base')] : []);
  });
});
