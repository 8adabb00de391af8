import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * An answer a browser would run as a document gets `Content-Security-Policy: sandbox`
 * (response.ts isActiveContent), so a page an upstream serves is not same-origin with every
 * other route. The decision must be the browser's, not a prefix list: Chromium renders
 * `application/atom+xml`, `application/rss+xml` and every `text/…+xml` as XML documents
 * (XHTML-namespace scripts run); it sniffs HTML out of `unknown/unknown`,
 * `application/unknown`, `*\/*` and a type without a `/`; and it reads a Content-Type
 * holding several types (one line with commas, or several lines) by its last valid one.
 * Each answer below carries a script; every one must be sandboxed. The plain API types stay
 * untouched.
 */
let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    // /api/v1/page?type=A&type=B answers with one Content-Type line per `type`.
    const types = new URL(req.url!, 'http://x').searchParams.getAll('type');
    res.setHeader('content-type', types.length === 1 ? types[0]! : types);
    res.end('<x:script xmlns:x="http://www.w3.org/1999/xhtml">fetch("/other/v1/secrets")</x:script>');
  });
  leash = await startSidecar(
    { routes: { api: { upstream: up.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /v1/**'] } } },
    { env: { KEY: 'sk-active-2f6d0c9a8b7e4d31' } },
  );
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

const csp = async (types: string[]) => {
  const query = types.map((t) => `type=${encodeURIComponent(t)}`).join('&');
  const agent = await rawRequest(port, `GET /api/v1/page?${query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });
  expect(agent.responses[0]?.status).toBe(200);
  return agent.responses[0]!.headers.filter(([n]) => n === 'content-security-policy').map(([, v]) => v);
};

describe('every answer a browser would run as a document is sandboxed', () => {
  it.each([
    // XML documents (Chromium: supported non-image types, IsXMLMimeType).
    [['application/atom+xml']],
    [['application/rss+xml; charset=utf-8']],
    [['text/vnd.example+xml']],
    [['Application/RSS+XML']],
    // Sniffed for HTML (Chromium mime_sniffer IsUnknownMimeType; MIME Sniffing standard).
    [['unknown/unknown']],
    [['application/unknown']],
    [['*/*']],
    [['html']],
    [['text']],
    // Several types: the browser takes the last valid one.
    [['application/json, text/html']],
    [['application/json; charset=utf-8,text/html']],
    [['text/event-stream, text/html']],
    [['text/plain, image/svg+xml']],
    [['application/json', 'text/html']],
    [['text/plain', 'application/xhtml+xml']],
  ])('Content-Type %j: sandboxed', async (types) => {
    expect(await csp(types)).toEqual(['sandbox']);
  });

  it.each([[['application/json']], [['application/json; charset=utf-8']], [['application/problem+json']], [['text/event-stream']], [['text/plain; charset=utf-8']], [['application/octet-stream']], [['image/png']]])(
    'Content-Type %j: untouched',
    async (types) => {
      expect(await csp(types)).toEqual([]);
    },
  );
});
