import { createServer, type Server, type Socket } from 'node:net';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest } from '../helpers/security-net.js';

/**
 * Node's HTTP client hands over at most 1000 of an answer's header lines (`headers`) and a
 * few more in `rawHeaders`, while its parser frames the body by every line. A
 * `Content-Encoding: gzip` or `Transfer-Encoding: gzip, chunked` past that point was
 * invisible to leash: an error body echoing the key went to the agent gzip-compressed,
 * unscrubbed, its Content-Encoding dropped; the agent gunzipped it and read the key.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-hdrcount-0123456789abcdefABCD';
let up: Server;
const sockets: Socket[] = [];
let answer: Buffer = Buffer.alloc(0);
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      if (d.includes('\r\n\r\n')) s.write(answer);
    });
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const route = {
    upstream: `http://127.0.0.1:${(up.address() as { port: number }).port}`,
    credential: { env: 'KEY' },
    inject: { header: 'authorization', format: 'Bearer {{credential}}' },
    allow: ['* /**'],
  };
  leash = await startSidecar({ routes: { r: route } }, { env: { KEY: SECRET } });
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  for (const s of sockets) s.destroy();
  up?.close();
});

const filler = (n: number) => Array.from({ length: n }, (_, i) => `x-f${i}: y\r\n`).join('');
const echo = gzipSync(Buffer.from(`{"error":"Incorrect API key provided: Bearer ${SECRET}"}`));

/** Everything the agent received, and its body gunzipped if it is gzip. */
async function agentSees(bytes: Buffer): Promise<{ status: number | undefined; everything: string }> {
  answer = bytes;
  const x = await rawRequest(port, 'GET /r/v1/x HTTP/1.1\r\nhost: x\r\n\r\n', { expectResponses: 1 });
  let gunzipped = '';
  try {
    gunzipped = gunzipSync(Buffer.from(x.raw.slice(x.raw.indexOf('\r\n\r\n') + 4), 'latin1')).toString();
  } catch {
    /* not gzip */
  }
  return { status: x.responses[0]?.status, everything: x.raw + gunzipped };
}

describe('framing headers past Node\'s header-line limit', () => {
  for (const lines of [1000, 1030, 1500]) {
    it(`Content-Encoding: gzip after ${lines} lines`, async () => {
      const got = await agentSees(Buffer.concat([Buffer.from(`HTTP/1.1 401 Unauthorized\r\ncontent-length: ${echo.length}\r\n${filler(lines)}content-encoding: gzip\r\n\r\n`), echo]));
      expect(got.everything).not.toContain(SECRET);
      expect(got.status).toBe(502);
    });
    it(`Transfer-Encoding: gzip, chunked after ${lines} lines`, async () => {
      const head = `HTTP/1.1 401 Unauthorized\r\n${filler(lines)}transfer-encoding: gzip, chunked\r\n\r\n${echo.length.toString(16)}\r\n`;
      const got = await agentSees(Buffer.concat([Buffer.from(head), echo, Buffer.from('\r\n0\r\n\r\n')]));
      expect(got.everything).not.toContain(SECRET);
      expect(got.status).toBe(502);
    });
  }
  it('an answer with 998 header lines is still relayed (and its error body scrubbed)', async () => {
    const got = await agentSees(Buffer.concat([Buffer.from(`HTTP/1.1 401 Unauthorized\r\ncontent-encoding: gzip\r\ncontent-length: ${echo.length}\r\n${filler(996)}\r\n`), echo]));
    expect(got.status).toBe(401);
    expect(got.everything).toContain('[REDACTED]');
    expect(got.everything).not.toContain(SECRET);
  });
});
