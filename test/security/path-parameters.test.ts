import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Servlet path parameters. Tomcat (CoyoteAdapter#postParseRequest), Jetty and Spring's
 * UrlPathHelper cut `;…` from every segment of the raw path before routing, then merge the
 * `//` that leaves; Spring MVC before 6 (Spring Boot 2) also matches with or without a
 * trailing slash. So `/v1/files/;x` is `/v1/files` to such an upstream: a segment that
 * starts with `;` disappears, and a `*` that leash matched against it allowed a request
 * with one segment fewer — `DELETE /v1/files/*` (delete one file) reached the upstream's
 * `DELETE /v1/files` (delete them all), with the credential.
 *
 * The upstream here routes like Tomcat + Spring MVC 5. Every `*` of every rule is given a
 * `;` segment in each spelling; leash must refuse them all and forward nothing.
 */
const SECRET = 'sk-path-params-9e8d7c6b5a4f3e2d';

/** Tomcat: path parameters cut from each raw segment, then `//` merged; Spring 5: a trailing slash ignored. */
function servletPath(rawPath: string): string {
  const cut = rawPath.split('/').map((seg) => (seg.includes(';') ? seg.slice(0, seg.indexOf(';')) : seg));
  const merged = cut.join('/').replace(/\/{2,}/g, '/');
  const decoded = decodeURIComponent(merged);
  return decoded.length > 1 && decoded.endsWith('/') ? decoded.slice(0, -1) : decoded;
}

/** The upstream's handlers, as `METHOD /pattern` with `{x}` for one segment. */
const HANDLERS = [
  'DELETE /v1/files',
  'DELETE /v1/files/{id}',
  'GET /v1/models',
  'GET /v1/models/{id}',
  'POST /v1/orgs/{org}/members',
  'POST /v1/orgs/{org}/members/{user}/role',
  'GET /v1/repos/{owner}/{repo}',
  'GET /v1/repos/{owner}/{repo}/issues',
];
function handlerFor(method: string, path: string): string | undefined {
  const segs = path.split('/').filter(Boolean);
  return HANDLERS.find((h) => {
    const [m, p] = h.split(' ') as [string, string];
    const want = p.split('/').filter(Boolean);
    return m === method && want.length === segs.length && want.every((w, i) => w.startsWith('{') || w === segs[i]);
  });
}

/** What the route's allow rules permit, as the upstream's handler names. */
const RULES: [rule: string, handler: string, target: (seg: string) => string][] = [
  ['DELETE /v1/files/*', 'DELETE /v1/files/{id}', (s) => `/v1/files/${s}`],
  ['GET /v1/models/*', 'GET /v1/models/{id}', (s) => `/v1/models/${s}`],
  ['POST /v1/orgs/*/members/*/role', 'POST /v1/orgs/{org}/members/{user}/role', (s) => `/v1/orgs/acme/members/${s}/role`],
  ['GET /v1/repos/*/*/issues', 'GET /v1/repos/{owner}/{repo}/issues', (s) => `/v1/repos/acme/${s}/issues`],
];

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
const ran: { handler: string | undefined; authorization: string | undefined }[] = [];

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    const q = req.url!.indexOf('?');
    ran.push({ handler: handlerFor(req.method!, servletPath(q === -1 ? req.url! : req.url!.slice(0, q))), authorization: req.headers.authorization });
    res.end('{}');
  });
  leash = await startSidecar(
    {
      routes: {
        api: bearerRoute(up.url, RULES.map(([rule]) => rule)),
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

async function send(method: string, target: string) {
  up.seen.length = 0;
  ran.length = 0;
  const body = method === 'POST' ? '{}' : '';
  const head = `${method} /api${target} HTTP/1.1\r\nHost: l\r\n${body ? `Content-Length: ${body.length}\r\n` : ''}Connection: close\r\n\r\n`;
  return rawRequest(port, head + body, { expectResponses: 1 });
}

const SEGMENTS = [';', ';x', ';jsessionid=0A1B2C', ';a=1;b=2', ';v=1,2', ';%41', ';;'];
const CASES = RULES.flatMap(([rule, , target]) => SEGMENTS.flatMap((seg) => ['', '/'].map((trail) => [rule, `${target(seg)}${trail}`] as const)));

describe('a segment the upstream drops as path parameters is never matched as one', () => {
  it('DELETE /v1/files/; does not reach the delete-all handler', async () => {
    const agent = await send('DELETE', '/v1/files/;');
    expect(ran).toEqual([]);
    expect(agent.responses[0]?.status).toBe(400);
    expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
  });

  it.each(CASES)('%s: %s is refused', async (rule, target) => {
    const agent = await send(rule.split(' ')[0]!, target);
    expect(ran, `the upstream ran ${JSON.stringify(ran)}`).toEqual([]);
    expect(agent.responses[0]?.status).toBe(400);
    expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
    expect(up.seen).toEqual([]);
  });

  it.each(RULES.flatMap(([rule, handler, target]) => ['f1', 'f1;v=2', 'f1;', '%3Bx'].map((seg) => [rule, handler, target(seg)] as const)))(
    '%s: %s is forwarded (the segment keeps a name before ";") and reaches %s',
    async (rule, handler, target) => {
      const agent = await send(rule.split(' ')[0]!, target);
      expect(agent.responses[0]?.status).toBe(200);
      expect(up.seen.map((r) => r.url)).toEqual([target]);
      expect(ran).toEqual([{ handler, authorization: `Bearer ${SECRET}` }]);
    },
  );
});
