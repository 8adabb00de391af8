import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { envFor, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A POST without a body (neither content-length nor transfer-encoding) has nothing a
 * method override could hide in: it is forwarded whatever its content-type says, even one
 * the body-override scanner would refuse to read (a multipart type without a boundary, a
 * form in a charset whose names are not ASCII). Only a POST with a body goes through the
 * override guard (server.ts proceed).
 */
const VALUE = 'sk-bodyless-post-test-credential-7a91c3';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-bodyless', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-bodyless' });

let upstream: Upstream | undefined;
let proxy: ProxyServer | undefined;
let route: RouteRuntime | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await proxy?.close(0);
  await upstream?.close();
  route?.close();
  proxy = upstream = route = undefined;
});

async function setUp() {
  const seen: { method: string; url: string; body: string }[] = [];
  const heads: string[] = [];
  upstream = await startUpstream((req, res) => {
    heads.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('latin1')));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body });
      res.end('{"ok":true}');
    });
  });
  route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['GET /**', 'POST /**'] });
  const outcomes: RequestOutcome[] = [];
  proxy = new ProxyServer(envFor(route, () => 1_000), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
  const { port } = await proxy.listen('127.0.0.1', 0);
  return { seen, heads, outcomes, port };
}

function send(port: number, raw: string): Promise<string> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sockets.push(sock);
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => {
      text += c;
      if (/\r\n\r\n[\s\S]*\}$/.test(text)) resolve(text);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(text));
    sock.write(raw);
  });
}

describe('a POST without a body', () => {
  for (const type of ['multipart/form-data', 'application/x-www-form-urlencoded; charset=utf-16']) {
    it(`is forwarded with content-type ${type}`, async () => {
      const { seen, outcomes, port } = await setUp();
      const answer = await send(port, `POST /search/nobody HTTP/1.1\r\nhost: leash\r\ncontent-type: ${type}\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      await waitFor(() => outcomes.length === 1);
      expect(outcomes[0]!.status).toBe(200);
      expect(seen).toEqual([{ method: 'POST', url: '/nobody', body: '' }]);
    });
  }

  it('with a body and such a content-type is refused, nothing forwarded (the contrast)', async () => {
    const { seen, heads, port } = await setUp();
    const answer = await send(port, 'POST /search/body HTTP/1.1\r\nhost: leash\r\ncontent-type: multipart/form-data\r\ncontent-length: 2\r\n\r\nab');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('leash_bad_request');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toHaveLength(0);
    expect(heads).toEqual([]);
  });
});
