import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methodOverrideParam } from '../../src/sidecar/proxy/target.js';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * PHP reads a query parameter's name as a C string: main/php_variables.c decodes it
 * (php_url_decode) and registers it with `strlen`, so everything from a decoded NUL on is
 * cut — `?_method%00=DELETE` and `?_method%00anything=DELETE` are `$_GET['_method']`, which
 * Symfony's and Laravel's `Request::getMethod()` run a POST as. The upstream here runs that
 * reader with PHP's name rules, NUL included; the route allows only `POST /v1/messages`.
 */
const SECRET = 'sk-override-nul-3a9c1e7b5d2f4086';

function decodeLenient(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
/** PHP's parse_str name rules: decoded, cut at NUL (strlen), leading spaces dropped, ` ` / `.` / unclosed `[` → `_`. */
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

const NAMES = ['_method', '_METHOD', '%5Fmethod', '.method', '+_method'];
const TAILS = ['%00', '%00x', '%00%00', '%00=', '%00[]', '%u0000'];
const CASES = NAMES.flatMap((n) => TAILS.map((t) => `?${n}${t}=DELETE`)).flatMap((q) => [q, `?limit=5&${q.slice(1)}`]);

describe('a method override cut short by a NUL (PHP) is refused', () => {
  it.each(CASES)('POST /v1/messages%s', async (query) => {
    up.seen.length = 0;
    ran.length = 0;
    const agent = await rawRequest(port, `POST /chat/v1/messages${query} HTTP/1.1\r\nHost: l\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`, { expectResponses: 1 });
    expect(ran, `ran upstream for POST ${query}`).toEqual([]);
    expect(agent.responses[0]?.status).toBe(400);
    expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
    expect(up.seen).toEqual([]);
  });

  it('names it canonically; a NUL elsewhere is no override', () => {
    expect(methodOverrideParam('?_method%00junk=DELETE')).toBe('_method');
    expect(methodOverrideParam('?x%00_method=DELETE')).toBeUndefined();
    expect(methodOverrideParam('?limit=5%00')).toBeUndefined();
  });
});
