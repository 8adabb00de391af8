import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { type Exchanged, ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * Two things the proxy listener does that http-proxy and Node would otherwise do
 * differently: a CONNECT is answered (leash is a reverse proxy: 400 leash_bad_request,
 * nothing forwarded, the connection closed) rather than dropped without a word; and the
 * upstream path goes out byte for byte as the agent sent it (under the route's prefix),
 * not re-escaped by url.parse (toProxy).
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-connect-raw-path-test-credential-94ab';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-crp', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-crp' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp() {
  const seen: string[] = [];
  const upstream = await stand.upstream((req, res) => {
    seen.push(req.url!);
    res.end('{"ok":true}');
  });
  const route = routeFor(upstream.url, new HandsOutAnything(cred()));
  const { outcomes, port, logs: sink } = await stand.start(route, { level: 'debug' });
  return { seen, outcomes, port, upstream, sink };
}

/** Sends `raw`, resolves with everything read once the listener closes the connection (or after 2 s). */
const exchange = (port: number, raw: string): Promise<Exchanged> => stand.exchange(port, raw, { ms: 2_000 });

describe('the proxy listener', () => {
  it('answers a CONNECT 400 leash_bad_request and closes the connection; nothing goes upstream', async () => {
    const { seen, port, upstream } = await setUp();
    const r = await exchange(port, `CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nhost: 127.0.0.1:${upstream.port}\r\n\r\n`);
    expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(r.text).toContain('leash_bad_request');
    expect(r.closed).toBe(true);
    expect(seen).toHaveLength(0);
  });

  it('answers a request Node cannot parse 400 leash_bad_request, closes the connection, and logs its parser code at debug', async () => {
    const { seen, port, sink } = await setUp();
    const r = await exchange(port, 'GET /search/x HTTP/1.1\r\nhost: leash\r\nbad header\r\n\r\n');
    expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(r.text).toContain('x-leash-error: leash_bad_request');
    expect(r.closed).toBe(true);
    expect(seen).toHaveLength(0);
    const logged = sink.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'malformed request refused');
    expect(logged).toHaveLength(1);
    expect(logged[0]!.level).toBe('debug');
    expect(String(logged[0]!.code)).toMatch(/^HPE_/);
  });

  it('keeps serving after a CONNECT whose agent reset the connection at once', async () => {
    const { port, upstream } = await setUp();
    for (let i = 0; i < 5; i++) {
      const sock = connect(port, '127.0.0.1');
      stand.sockets.push(sock);
      sock.on('error', () => undefined);
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.write(`CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`);
      sock.resetAndDestroy();
    }
    await sleep(100);
    const r = await exchange(port, 'GET /search/after HTTP/1.1\r\nhost: leash\r\nconnection: close\r\n\r\n');
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
  });

  it("sends the agent's path to the upstream as it was written: no re-escaping of {, }, |, ^, ', \"", async () => {
    const { seen, outcomes, port } = await setUp();
    const path = `/a{b}|c^d'e"f`;
    const r = await exchange(port, `GET /search${path} HTTP/1.1\r\nhost: leash\r\nconnection: close\r\n\r\n`);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    await waitFor(() => outcomes.length === 1);
    expect(seen).toEqual([path]);
  });
});
