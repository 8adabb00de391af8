import { connect } from 'node:net';
import OpenAI, { toFile } from 'openai';
import { beforeEach, describe, expect, it } from 'vitest';
import { bearerRoute } from '../helpers/harness.js';
import { parseResponses, rawRequest, recordingSidecar, type RawResponse } from '../helpers/security-net.js';
import { sleep } from '../helpers/wait.js';

/**
 * Method overrides in the request body (body-override.ts). The route allows `POST
 * /v1/messages` (send) and `GET /v1/messages`; an upstream running Rack's MethodOverride,
 * Symfony/Laravel's `getMethod()` or Spring's HiddenHttpMethodFilter would run a POST
 * whose body names `_method` as that method. The upstream here runs those readers on
 * every whole request it receives: none may ever run another method. A refused body is
 * cut before the bytes that complete the name are sent, so the upstream never holds a
 * whole request (the recording upstream records a request only once its body ended).
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-override-body-4e3d2c1b0a9f8e7d';

/** Form fields as Rack/PHP/servlets read them: names only, decoded (independent of leash's code). */
function formNames(body: string): string[] {
  return body.split('&').map((pair) => {
    const raw = pair.split('=')[0]!.replace(/\+/g, ' ');
    let n: string;
    try {
      n = decodeURIComponent(raw);
    } catch {
      n = raw;
    }
    return n.replace(/^ +/, '').replace(/\[.*$/, '').replace(/[ .]/g, '_');
  });
}
const partNames = (body: string) => [...body.matchAll(/Content-Disposition:[^\r\n]*?;\s*name="([^"]*)"/gi)].map((m) => m[1]!);
function jsonTopKeys(body: string): string[] {
  try {
    const v = JSON.parse(body) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : [];
  } catch {
    return [];
  }
}
/** The readers that would run another method than `method` for this request. */
function overriddenBy(method: string, type: string | undefined, body: string): string[] {
  if (method !== 'POST') return [];
  const t = (type ?? '').toLowerCase();
  const out: string[] = [];
  const form = t === '' || t.startsWith('application/x-www-form-urlencoded');
  const names = form ? formNames(body) : t.startsWith('multipart/') ? partNames(body) : [];
  if (names.includes('_method')) out.push(form && t === '' ? 'rack (no content-type)' : 'rack/symfony/spring');
  if (t.includes('json') && jsonTopKeys(body).includes('_method')) out.push('laravel (json)');
  return out;
}

const ran: string[] = [];
const t = recordingSidecar(
  (url) => ({ api: bearerRoute(url, ['POST /v1/messages', 'GET /v1/messages']), openai: bearerRoute(url, ['POST /v1/files']) }),
  SECRET,
  (req, res, body) => {
    ran.push(...overriddenBy(req.method!, req.headers['content-type'], body));
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  },
);
beforeEach(() => {
  ran.length = 0;
});

const head = (type: string | undefined, framing: string) =>
  `POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n${type === undefined ? '' : `Content-Type: ${type}\r\n`}${framing}Connection: close\r\n\r\n`;

/** Sends the head and the body in `pieces`, one write each, `gapMs` apart; resolves with what came back once the connection closes. */
function sendInPieces(type: string | undefined, pieces: string[], chunked: boolean, gapMs = 15): Promise<RawResponse[]> {
  const total = pieces.reduce((n, p) => n + Buffer.byteLength(p), 0);
  return new Promise((resolve, reject) => {
    const s = connect(t.port, '127.0.0.1');
    let raw = '';
    s.on('data', (d) => (raw += d.toString('latin1')));
    s.on('error', () => resolve(parseResponses(raw)));
    s.on('close', () => resolve(parseResponses(raw)));
    s.once('connect', async () => {
      try {
        s.write(head(type, chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${total}\r\n`));
        for (const p of pieces) {
          if (s.destroyed) break;
          s.write(chunked ? `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n` : p);
          await sleep(gapMs);
        }
        if (chunked && !s.destroyed) s.write('0\r\n\r\n');
      } catch (e) {
        reject(e as Error);
      }
    });
    setTimeout(() => s.destroy(), 5_000).unref();
  });
}

const MULTI = 'multipart/form-data; boundary=----leashTestBoundary';
const part = (name: string, value: string) => `------leashTestBoundary\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const FILE_PART = `------leashTestBoundary\r\nContent-Disposition: form-data; name="file"; filename="page.html"\r\nContent-Type: text/html\r\n\r\n<form method="post"><input type="hidden" name="_method" value="delete"></form>\r\n`;
const END = '------leashTestBoundary--\r\n';

const OVERRIDES: [name: string, type: string | undefined, body: string][] = [
  ['a form', 'application/x-www-form-urlencoded', 'text=hi&_method=DELETE'],
  ['a form, the name escaped', 'application/x-www-form-urlencoded; charset=utf-8', 'text=hi&%5Fmethod=DELETE'],
  ['a POST without a content-type (Rack parses it as a form)', undefined, '_method=DELETE'],
  ['a multipart field', MULTI, part('text', 'hi') + part('_method', 'DELETE') + END],
  ['a multipart field after a file', MULTI, FILE_PART + part('_method', 'DELETE') + END],
  ['a multipart part named by its Content-ID (Rack)', MULTI, `------leashTestBoundary\r\nContent-Disposition: form-data\r\nContent-ID: _method\r\n\r\nDELETE\r\n${END}`],
  ["a multipart name in single quotes (PHP)", MULTI, `------leashTestBoundary\r\nContent-Disposition: form-data; name='_method'\r\n\r\nDELETE\r\n${END}`],
  ['a multipart name after a bare-LF blank line (Rack reads on to CRLF CRLF)', MULTI, `------leashTestBoundary\r\nX-Pad: 1\n\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n${END}`],
  ['a form in UTF-16LE (Tomcat decodes names in it)', 'application/x-www-form-urlencoded; charset=UTF-16LE', '_\0m\0e\0t\0h\0o\0d\0=D\0E\0L\0E\0T\0E\0'],
  ['a JSON top-level key (Laravel)', 'application/json', '{"text":"hi","_method":"DELETE"}'],
  ['a JSON top-level key, escaped', 'application/json', '{"text":"hi","\\u005fmethod":"DELETE"}'],
];

describe('a method override in a POST body is refused, never run', () => {
  for (const [name, type, body] of OVERRIDES) {
    it(`${name}: 400 leash_bad_request, nothing whole reaches the upstream`, async () => {
      const agent = await rawRequest(t.port, head(type, `Content-Length: ${Buffer.byteLength(body)}\r\n`) + body, { expectResponses: 1 });
      expect(agent.responses[0]?.status).toBe(400);
      expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
      expect(agent.responses[0]?.body).toContain('method override');
      expect(ran).toEqual([]);
      expect(t.up.seen).toEqual([]);
    });

    for (const chunked of [false, true]) {
      it(`${name}: split across reads (${chunked ? 'chunked' : 'content-length'}), the name's last byte is never sent`, async () => {
        const at = body.search(/_method|%5Fmethod|\\u005fmethod/) + 3; // cut inside the name
        const responses = await sendInPieces(type, [body.slice(0, at), body.slice(at)], chunked);
        expect(responses[0]?.status).toBe(400);
        expect(ran).toEqual([]);
        expect(t.up.seen).toEqual([]);
      });
    }
  }

  it('the credential is in no refusal', async () => {
    const agent = await rawRequest(t.port, head('application/x-www-form-urlencoded', 'Content-Length: 14\r\n') + '_method=DELETE', { expectResponses: 1 });
    expect(agent.raw).not.toContain(SECRET);
  });
});

describe('bodies without an override go through unchanged', () => {
  const big = JSON.stringify({ model: 'x', messages: [{ role: 'user', content: `explain obj._method() and "_method": ${'z'.repeat(3 * 1024 * 1024)}` }] });
  const LEGIT: [name: string, type: string | undefined, body: string][] = [
    ['a chat completion mentioning _method', 'application/json', '{"model":"x","messages":[{"role":"user","content":"what does \\"_method\\": \\"DELETE\\" do in Rails?"}]}'],
    ['a nested _method key', 'application/json', '{"tool":{"_method":"DELETE"}}'],
    ['a 3 MiB JSON body', 'application/json', big],
    ['a form', 'application/x-www-form-urlencoded', 'text=_method%3DDELETE&n=1'],
    ['an upload of an HTML page with a Rails form in it', MULTI, part('purpose', 'assistants') + FILE_PART + END],
    ['a text/plain body', 'text/plain', '_method=DELETE'],
  ];
  for (const [name, type, body] of LEGIT) {
    it(`${name}: forwarded byte for byte, with the credential`, async () => {
      const agent = await rawRequest(t.port, head(type, `Content-Length: ${Buffer.byteLength(body)}\r\n`) + body, { expectResponses: 1, timeoutMs: 10_000 });
      expect(agent.responses[0]?.status).toBe(200);
      expect(t.up.seen).toHaveLength(1);
      expect(t.up.seen[0]!.body === body).toBe(true);
      expect(t.up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
      expect(ran).toEqual([]);
    });
  }

  it('a chunked JSON body in many reads', async () => {
    const body = '{"model":"x","input":"' + 'abc\\"'.repeat(2000) + '"}';
    const pieces = body.match(/[\s\S]{1,997}/g)!;
    const responses = await sendInPieces('application/json', pieces, true, 1);
    expect(responses[0]?.status).toBe(200);
    expect(t.up.seen[0]?.body).toBe(body);
  });

  it('the openai SDK uploads a file (multipart, its own boundary) whose content names _method', async () => {
    const openai = new OpenAI({ apiKey: 'sk-agent-dummy', baseURL: `${t.leash.url}/openai/v1`, maxRetries: 0, timeout: 5_000 });
    const content = '{"messages":[{"role":"user","content":"name=\\"_method\\" value=\\"delete\\""}]}\n';
    await openai.files.create({ file: await toFile(Buffer.from(content), 'train.jsonl'), purpose: 'fine-tune' });
    expect(t.up.seen).toHaveLength(1);
    expect(t.up.seen[0]!.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(t.up.seen[0]!.body).toContain(content);
    expect(t.up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('a PUT form body is not read (the readers override POST only)', async () => {
    const agent = await rawRequest(t.port, 'PUT /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\nConnection: close\r\n\r\n_method=DELETE', { expectResponses: 1 });
    expect(agent.responses[0]?.status).toBe(403); // not allowed by the route, for its method alone
  });
});
