import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methodOverrideParam } from '../../src/sidecar/proxy/target.js';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Method overrides in the query. leash removes the override headers; the same choice is
 * made by a query parameter on many upstreams, and the query is forwarded as sent:
 *
 * - Symfony and Laravel: `Request::getMethod()` on a POST reads `_method` from the body,
 *   then the query (`$this->query->get('_method')`), names decoded by PHP's rules
 *   (leading spaces dropped, ` `, `.` and an unclosed `[` read as `_`);
 * - Spring's HiddenHttpMethodFilter and the Jersey/airlift filters: `_method` through the
 *   servlet parameters, query included;
 * - Salesforce's REST API: `_HttpMethod` (`POST …/sobjects/Account/ID?_HttpMethod=DELETE`);
 * - the Flask MethodRewriteMiddleware recipe: `__METHOD_OVERRIDE__`.
 *
 * The upstream here runs each of those readers. The route allows `POST /v1/messages`
 * (send) and `GET /v1/messages` (list); `DELETE`/`PATCH` must never run.
 */
const SECRET = 'sk-override-q-7c6b5a4f3e2d1c0b';

/** PHP's parse_str name rules (main/php_variables.c). */
function phpName(raw: string): string {
  let n = decodeLenient(raw.replace(/\+/g, ' ')).replace(/^ +/, '');
  const open = n.indexOf('[');
  if (open !== -1 && n.indexOf(']', open) === -1) n = n.slice(0, open) + '_' + n.slice(open + 1);
  return n.replace(/[ .]/g, '_');
}
function decodeLenient(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
function params(query: string, decodeName: (raw: string) => string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const name = decodeName(eq === -1 ? pair : pair.slice(0, eq));
    if (!out.has(name)) out.set(name, decodeLenient((eq === -1 ? '' : pair.slice(eq + 1)).replace(/\+/g, ' ')));
  }
  return out;
}
const servletName = (raw: string) => decodeLenient(raw.replace(/\+/g, ' '));

/** The method each documented reader runs for this request. */
function readers(method: string, query: string): Record<string, string> {
  const php = params(query, phpName);
  const servlet = params(query, servletName);
  const pick = (v: string | undefined, allowed: string[]) => (v !== undefined && allowed.includes(v.toUpperCase()) ? v.toUpperCase() : method);
  return {
    symfony: method === 'POST' ? pick(php.get('_method'), ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'PURGE']) : method,
    spring: method === 'POST' ? pick(servlet.get('_method'), ['PUT', 'DELETE', 'PATCH']) : method,
    jersey: method === 'POST' || method === 'GET' ? pick(servlet.get('_method'), ['PUT', 'DELETE', 'PATCH', 'POST', 'GET']) : method,
    salesforce: method === 'POST' || method === 'GET' ? pick(servlet.get('_HttpMethod'), ['PATCH', 'DELETE', 'PUT']) : method,
    flask: pick(servlet.get('__METHOD_OVERRIDE__'), ['PUT', 'DELETE', 'PATCH']),
  };
}

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
const ran: { reader: string; method: string; authorization: string | undefined }[] = [];

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    const q = req.url!.indexOf('?');
    for (const [reader, method] of Object.entries(readers(req.method!, q === -1 ? '' : req.url!.slice(q + 1)))) {
      if (method !== req.method) ran.push({ reader, method, authorization: req.headers.authorization });
    }
    res.end('{}');
  });
  leash = await startSidecar(
    {
      routes: {
        chat: bearerRoute(up.url, ['POST /v1/messages', 'GET /v1/messages']),
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

async function send(method: string, query: string) {
  up.seen.length = 0;
  ran.length = 0;
  const body = method === 'GET' ? '' : '{}';
  return rawRequest(port, `${method} /chat/v1/messages${query} HTTP/1.1\r\nHost: l\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, { expectResponses: 1 });
}

const encodeFirst = (n: string) => `%${n.charCodeAt(0).toString(16).toUpperCase()}${n.slice(1)}`;
const encodeLast = (n: string) => `${n.slice(0, -1)}%${n.charCodeAt(n.length - 1).toString(16)}`;
/** Every spelling of a parameter name that one of the readers above takes as `name`. */
function spellings(name: string): string[] {
  const out = new Set([name, name.toUpperCase(), name.toLowerCase(), encodeFirst(name), encodeLast(name), `${name}[]`]);
  if (name.startsWith('_') && !name.startsWith('__')) for (const c of ['.', '[', '%2E', '%5B']) out.add(c + name.slice(1)); // PHP: `.` / unclosed `[` → `_`
  out.add(`+${name}`); // PHP drops leading spaces
  out.add(`%20${name}`);
  return [...out];
}

const NAMES = ['_method', '_HttpMethod', '__METHOD_OVERRIDE__'];
const PLACES: [string, (p: string) => string][] = [
  ['alone', (p) => `?${p}`],
  ['after another parameter', (p) => `?limit=5&${p}`],
  ['before another parameter', (p) => `?${p}&limit=5`],
];
const CASES = NAMES.flatMap((name) =>
  spellings(name).flatMap((spelt) => PLACES.flatMap(([place, put]) => ['POST', 'GET'].map((method) => [method, name, spelt, place, put(`${spelt}=DELETE`)] as const))),
);

describe('a method override in the query is refused, never forwarded', () => {
  it('an allowed POST with ?_method=DELETE does not run as DELETE upstream', async () => {
    const agent = await send('POST', '?_method=DELETE');
    expect(ran).toEqual([]);
    expect(agent.responses[0]?.status).toBe(400);
    expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
    expect(up.seen).toEqual([]);
  });

  it.each(CASES)('%s with %s spelt %s, %s (%s)', async (method, _name, _spelt, _place, query) => {
    const agent = await send(method, query);
    expect(ran, `ran upstream for ${method} ${query}`).toEqual([]);
    expect(agent.responses[0]?.status).toBe(400);
    expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
    expect(up.seen).toEqual([]);
  });

  it.each(['?method=DELETE', '?q=_method', '?my_method=x', '?_methods=1', '?x=1&http_method=a', '?limit=5', '?_HttpMethodX=1'])('%s is forwarded as sent', async (query) => {
    const agent = await send('POST', query);
    expect(agent.responses[0]?.status).toBe(200);
    expect(up.seen.map((r) => r.url)).toEqual([`/v1/messages${query}`]);
  });

  it('names the parameter by its canonical name only', () => {
    expect(methodOverrideParam('?%5Fmethod=DELETE')).toBe('_method');
    expect(methodOverrideParam('?x=1;_METHOD=put')).toBe('_method');
    expect(methodOverrideParam('?X-HTTP-Method-Override=DELETE')).toBe('x_http_method_override');
    expect(methodOverrideParam('?%u005Fmethod=DELETE')).toBe('_method');
    expect(methodOverrideParam('?limit=5')).toBeUndefined();
    expect(methodOverrideParam('')).toBeUndefined();
  });
});
