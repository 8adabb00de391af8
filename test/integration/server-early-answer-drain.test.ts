import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { parseResponses } from '../helpers/security-net.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * An upstream that answers before reading the request body (an early 401 or 413): the
 * agent gets that answer, and the rest of its body is to be read and dropped by leash so
 * that the agent's connection carries its next request (server.ts handle 'close':
 * `req.resume(); // the rest of the body is read and dropped: the agent's connection
 * stays usable`). test/security/early-answer.test.ts covers a rest of ~100 bytes.
 *
 * Found in the twentieth session, fixed since: with a rest larger than a few stream
 * buffers (≥ ~100 KB) the agent's connection stalled and its next request was never
 * answered. The close handler called withdrawRequest (which destroys the upstream request)
 * and then req.resume(); but the agent's request was still piped into that upstream
 * request, and when the destroyed request emitted 'close' the pipe unpiped and paused the
 * agent's request again (Readable.pipe's cleanup), so leash stopped reading the agent's
 * socket. It is now unpiped before it is resumed. The class: rests of every size from a
 * few bytes to 1 MB, sent with Content-Length or chunked.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-early-answer-drain-test-credential-1f6b';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-drain', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-drain' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

/** The body's framing: the head's header, and how the rest of `n` bytes goes on the wire after the first KiB. */
const FRAMINGS = {
  'content-length': { header: (n: number) => `content-length: ${n + 1_000}`, first: 'x'.repeat(1_000), rest: (n: number) => 'x'.repeat(n) },
  chunked: {
    header: () => 'transfer-encoding: chunked',
    first: `3e8\r\n${'x'.repeat(1_000)}\r\n`,
    rest: (n: number) => (n > 0 ? `${n.toString(16)}\r\n${'x'.repeat(n)}\r\n` : '') + '0\r\n\r\n',
  },
} as const;

describe('an answer that comes before the request body has gone out', () => {
  for (const [framing, f] of Object.entries(FRAMINGS)) {
    for (const rest of [100, 64 * 1024, 256 * 1024, 999_000]) {
      it(`leaves the agent connection usable after a rest of ${rest} bytes (${framing})`, async () => {
        const seen: string[] = [];
        const upstream = await stand.upstream((req, res) => {
          seen.push(`${req.method} ${req.url}`);
          res.writeHead(req.method === 'POST' ? 401 : 200, { 'content-length': '2' });
          res.end('no');
        });
        const route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['GET /**', 'POST /**'] });
        const { port } = await stand.start(route);
        const { sock, received } = await stand.open(port);
        sock.write(`POST /search/upload HTTP/1.1\r\nhost: leash\r\ncontent-type: application/octet-stream\r\n${f.header(rest)}\r\n\r\n${f.first}`);
        await waitFor(() => parseResponses(received()).length === 1, { timeoutMs: 2_000 });
        expect(parseResponses(received())[0]!.status).toBe(401);
        await sleep(50);
        sock.write(f.rest(rest));
        sock.write('GET /search/next HTTP/1.1\r\nhost: leash\r\n\r\n');
        await waitFor(() => parseResponses(received()).length === 2, { timeoutMs: 2_000, message: 'the next request on the connection to be answered' });
        expect(parseResponses(received()).map((r) => r.status)).toEqual([401, 200]);
        expect(seen).toEqual(['POST /upload', 'GET /next']);
      });
    }
  }
});
