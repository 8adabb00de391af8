import { describe, expect, it } from 'vitest';
import { bearerRoute } from '../helpers/harness.js';
import { expectContinue, rawRequest, recordingSidecar } from '../helpers/security-net.js';

/**
 * Legitimate POSTs that now stream through the override guard (body-override.ts): the
 * framings and client habits real uploaders have must still work through it.
 */
const SECRET = 'sk-override-legit-0a1b2c3d4e5f6a7b';
const t = recordingSidecar((url) => ({ api: bearerRoute(url, ['POST /v1/upload']) }), SECRET);

const MULTI = 'multipart/form-data; boundary=----leashLegit';
const body = `------leashLegit\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${'q'.repeat(200_000)}\r\n------leashLegit--\r\n`;

describe('guarded POSTs real clients send', () => {
  it('Expect: 100-continue on a multipart upload (curl -F does this for large files)', async () => {
    const r = await expectContinue(`${t.leash.url}/api/v1/upload`, body, { 'content-type': MULTI });
    expect(r).toEqual({ status: 200, sawContinue: true });
    expect(t.up.seen).toHaveLength(1);
    expect(t.up.seen[0]!.body === body).toBe(true);
    expect(t.up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('a chunked form body with trailers, then a second request on the same connection', async () => {
    const form = 'a=1&b=2';
    const first = `POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n${form.length.toString(16)}\r\n${form}\r\n0\r\nx-checksum: abc\r\n\r\n`;
    const second = `POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\n{"n":42}`;
    const agent = await rawRequest(t.port, first + second, { expectResponses: 2 });
    expect(agent.responses.map((r) => r.status)).toEqual([200, 200]);
    expect(t.up.seen.map((s) => s.body)).toEqual([form, '{"n":42}']);
  });
});
