import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methodOverrideParam } from '../../src/sidecar/proxy/target.js';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Found triaging target.ts's survivors (twentieth session), fixed since:
 * methodOverrideParam decoded a parameter name with decodeURIComponent and, when that
 * threw (a `%` not followed by two hex digits, or escapes that are not UTF-8), compared
 * the name *as sent*. PHP decodes leniently (php_url_decode turns every valid `%XX` into
 * its byte and leaves a bad `%` alone) and then cuts the name at the first NUL (strlen):
 * `?_method%00%=DELETE` is `$_GET['_method'] = 'DELETE'`, which Symfony's and Laravel's
 * `Request::getMethod()` run a POST as. leash, comparing `_method%00%`, saw no override
 * and forwarded it with the credential. One undecodable escape anywhere after the NUL was
 * enough (`%`, `%zz`, `%ff`, `%E0`, a bare `%u`). Such a name is now decoded escape by
 * escape, as PHP does, before the NUL cut.
 * The upstream runs PHP's name rules (the same model as override-query-nul.test.ts).
 */
const SECRET = 'sk-override-undecodable-6b2d8f0a4c1e3579';

function decodeLenient(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
/** PHP's parse_str name rules: decoded leniently, cut at NUL (strlen), leading spaces dropped, ` ` / `.` / unclosed `[` → `_`. */
function phpName(raw: string): string {
  let n = decodeLenient(raw.replace(/\+/g, ' '));
  if (n.includes('\0')) n = n.slice(0, n.indexOf('\0'));
  n = n.replace(/^ +/, '');
  const open = n.indexOf('[');
  if (open !== -1 && n.indexOf(']', open) === -1) n = n.slice(0, open) + '_' + n.slice(open + 1);
  return n.replace(/[ .]/g, '_');
}
/** Symfony Request::getMethod() on a POST: `_method` from the query. */
function symfonyMethod(method: string, query: string): string {
  if (method !== 'POST') return method;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && phpName(pair.slice(0, eq)) === '_method') return decodeLenient(pair.slice(eq + 1)).toUpperCase();
  }
  return method;
}

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
const ran: string[] = [];

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    const q = req.url!.indexOf('?');
    const method = symfonyMethod(req.method!, q === -1 ? '' : req.url!.slice(q + 1));
    if (method !== req.method) ran.push(`${method} with ${String(req.headers.authorization)}`);
    res.end('{}');
  });
  leash = await startSidecar(
    { routes: { chat: { upstream: up.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['POST /v1/messages'] } } },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

const CASES = ['?_method%00%=DELETE', '?%5Fmethod%00%zz=DELETE', '?_method%00%ff=DELETE', '?_method%00%E0=DELETE', '?limit=5&+_method%00%u=DELETE'];

describe('a method override whose name has an undecodable escape after a NUL (PHP)', () => {
  it('PHP reads each of these names as _method, and Symfony would run the POST as DELETE', () => {
    for (const q of CASES) expect(symfonyMethod('POST', q.slice(1)), q).toBe('DELETE');
  });

  for (const query of CASES) {
    it(`POST /v1/messages${query} is refused, never forwarded`, async () => {
      up.seen.length = 0;
      ran.length = 0;
      const agent = await rawRequest(port, `POST /chat/v1/messages${query} HTTP/1.1\r\nHost: l\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`, { expectResponses: 1 });
      expect(ran, `ran upstream for POST ${query}`).toEqual([]);
      expect(agent.responses[0]?.status).toBe(400);
      expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
      expect(up.seen).toEqual([]);
      expect(methodOverrideParam(query)).toBe('_method');
    });
  }
});
