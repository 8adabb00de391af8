import { afterEach, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/**
 * An error is scrubbed whatever its content type: an upstream that answers a refused key
 * as an event stream (some streaming APIs do) must not get the key back to the agent,
 * while a successful stream is relayed untouched.
 */
const SECRET = 'sk-stream-err-5d1c0e9b7a3f42c8';

let upstream: Upstream | undefined;
let leash: RunningSidecar | undefined;
afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  leash = upstream = undefined;
});

describe('error answers sent as text/event-stream', () => {
  it.each([401, 403, 429, 500])('a %i event stream echoing the key is scrubbed; a 200 stream is not touched', async (status) => {
    upstream = await startUpstream((req, res) => {
      const ok = req.url!.endsWith('/ok');
      res.writeHead(ok ? 200 : status, { 'content-type': 'text/event-stream' });
      res.write(`data: {"error":"bad key ${ok ? 'none' : SECRET}"}\n\n`);
      res.end();
    });
    leash = await startSidecar(
      { routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } } },
      { env: { KEY: SECRET } },
    );
    const bad = await fetch(`${leash.url}/api/v1/stream`);
    expect(bad.status).toBe(status);
    const text = await bad.text();
    expect(text).toContain('[REDACTED]');
    expect(text).not.toContain(SECRET);
    const ok = await fetch(`${leash.url}/api/v1/ok`);
    expect(await ok.text()).toBe('data: {"error":"bad key none"}\n\n');
  });
});
