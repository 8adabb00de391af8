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
 * A POST body that names a method override, found on its way upstream (server.ts
 * forwardGuarded): the agent gets 400 leash_bad_request with `connection: close`, and its
 * connection is closed (the rest of what it sent is not read as another request).
 */
const VALUE = 'sk-override-refusal-test-credential-0c4d';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-ovr', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-ovr' });

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

describe('a POST whose body names a method override', () => {
  for (const [type, body] of [
    ['application/x-www-form-urlencoded', 'a=1&_method=DELETE'],
    ['application/json', '{"a":1,"_method":"DELETE"}'],
  ] as const) {
    it(`(${type}) is refused 400 and its connection closed`, async () => {
      const completed: string[] = [];
      upstream = await startUpstream((req, res) => {
        let got = '';
        req.on('data', (c: Buffer) => (got += c.toString('latin1')));
        req.on('end', () => {
          completed.push(got);
          res.end('ok');
        });
        req.on('error', () => undefined);
      });
      route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['POST /**'] });
      const outcomes: RequestOutcome[] = [];
      proxy = new ProxyServer(envFor(route, () => 1_000), { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
      const { port } = await proxy.listen('127.0.0.1', 0);
      const sock = connect(port, '127.0.0.1');
      sockets.push(sock);
      let text = '';
      let closed = false;
      sock.setEncoding('latin1');
      sock.on('data', (c: string) => (text += c));
      sock.on('error', () => undefined);
      sock.on('close', () => (closed = true));
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.write(`POST /search/x HTTP/1.1\r\nhost: leash\r\ncontent-type: ${type}\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      await waitFor(() => closed, { timeoutMs: 2_000, message: 'leash to close the connection' });
      expect(text).toMatch(/^HTTP\/1\.1 400 /);
      expect(text).toContain('leash_bad_request');
      expect(text.toLowerCase()).toContain('\r\nconnection: close\r\n');
      expect(outcomes.map((o) => o.status)).toEqual([400]);
      expect(completed).toEqual([]);
    });
  }
});
