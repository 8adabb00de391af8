import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INBOUND_CREDENTIAL_HEADERS, OVERRIDE_HEADERS } from '../../src/sidecar/proxy/headers.js';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * CGI-style servers name a request header by its CGI variable: upper-cased, `-` as `_`
 * (RFC 3875 §4.1.18). Puma (Rails, Sinatra), Unicorn, WEBrick, PHP's SAPIs and older
 * gunicorn give `X_HTTP_METHOD_OVERRIDE: DELETE` the same variable as
 * `X-HTTP-Method-Override: DELETE`: HTTP_X_HTTP_METHOD_OVERRIDE, which Rack::MethodOverride
 * (in every Rails app that is not API-only) reads. Puma keeps the underscore form unless
 * the dashed one is also present, so leash removing the dashed one is what lets it through.
 *
 * The upstream here builds Puma's env from the raw header lines (Puma::Request
 * #req_env_post_parse) and runs Rack::MethodOverride on it. The route allows
 * `POST /v1/messages` (send) only; `DELETE /v1/messages` (purge) must never run.
 */
const SECRET = 'sk-aliases-0a1b2c3d4e5f60718293';

/** Puma's env for the header lines: `-` → `_`; an `_` name is dropped if a `-` one maps to the same key. */
function pumaEnv(rawHeaders: readonly string[]): Map<string, string> {
  const dashed = new Map<string, string>();
  const underscored = new Map<string, string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const key = `HTTP_${name.toUpperCase().replace(/-/g, '_')}`;
    const into = name.includes('_') ? underscored : dashed;
    into.set(key, into.has(key) ? `${into.get(key)}, ${rawHeaders[i + 1]}` : rawHeaders[i + 1]!);
  }
  for (const [k, v] of underscored) if (!dashed.has(k)) dashed.set(k, v);
  return dashed;
}

/** Rack::MethodOverride: on POST, `_method` (form body) or HTTP_X_HTTP_METHOD_OVERRIDE names the method. */
const RACK_METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS', 'PATCH', 'LINK', 'UNLINK']);
function rackMethod(method: string, env: Map<string, string>): string {
  if (method !== 'POST') return method;
  const override = (env.get('HTTP_X_HTTP_METHOD_OVERRIDE') ?? '').toUpperCase();
  return RACK_METHODS.has(override) ? override : method;
}

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
const ran: { method: string; url: string; authorization: string | undefined }[] = [];

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    const env = pumaEnv(req.rawHeaders);
    ran.push({ method: rackMethod(req.method!, env), url: req.url!, authorization: env.get('HTTP_AUTHORIZATION') });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ env: [...env.keys()] }));
  });
  leash = await startSidecar(
    {
      routes: {
        chat: bearerRoute(up.url, ['POST /v1/messages']),
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

/** Every spelling a CGI-style server reads as `name`: each `-` kept or made `_`, in two cases. */
function spellings(name: string): string[] {
  const parts = name.split('-');
  const out = new Set<string>();
  for (let mask = 1; mask < 1 << (parts.length - 1); mask++) {
    const spelt = parts.reduce((acc, p, i) => (i === 0 ? p : acc + (mask & (1 << (i - 1)) ? '_' : '-') + p), '');
    out.add(spelt);
    out.add(spelt.toUpperCase());
  }
  return [...out];
}

const cgiKey = (name: string) => `HTTP_${name.toUpperCase().replace(/-/g, '_')}`;
// Every removed header with a `-` in its name; the route injects `authorization` itself.
const REMOVED = [...OVERRIDE_HEADERS, ...INBOUND_CREDENTIAL_HEADERS].filter((n) => n.includes('-'));
const CASES = REMOVED.flatMap((name) => spellings(name).map((sent) => [name, sent] as const));

describe('a removed header spelt with underscores never reaches the upstream', () => {
  it('covers every removed name with a dash', () => {
    expect(REMOVED).toEqual(expect.arrayContaining(['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url', 'x-api-key']));
    expect(CASES.length).toBeGreaterThan(40);
  });

  it.each(CASES)('%s sent as %s', async (name, sent) => {
    up.seen.length = 0;
    ran.length = 0;
    const value = name.endsWith('url') ? '/v1/admin/purge' : 'DELETE';
    const agent = await rawRequest(port, `POST /chat/v1/messages HTTP/1.1\r\nHost: l\r\n${sent}: ${value}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`, {
      expectResponses: 1,
    });
    expect(agent.responses[0]?.status).toBe(200);
    expect(up.seen).toHaveLength(1);
    // What the allow rule permitted is what ran, with the credential ...
    expect(ran).toEqual([{ method: 'POST', url: '/v1/messages', authorization: `Bearer ${SECRET}` }]);
    // ... and nothing that a CGI-style server reads as the removed header arrived.
    expect(pumaEnv(up.seen[0]!.rawHeaders).has(cgiKey(name)), `${sent} reached the upstream as ${cgiKey(name)}`).toBe(false);
  });
});
