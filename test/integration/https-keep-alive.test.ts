import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { HandsOutAnything } from '../helpers/passes.js';
import { rawRequest } from '../helpers/proxy-util.js';
import { issueServerCert, makeCa } from '../helpers/proxy-tls.js';

/**
 * A route's upstream pool keeps its connections alive (pool.ts), over TLS as over plain
 * HTTP: requests one after another reuse one upstream connection (one TLS handshake), as
 * long as the upstream does not say otherwise.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-keep-alive-test-credential-0123456789';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-ka', acquiredAtMs: 0, expiresAtMs: Number.MAX_SAFE_INTEGER, lease: 'L-ka' });

const ca = makeCa('leash keep-alive test CA');
const serverCert = issueServerCert(ca, { ips: ['127.0.0.1'], dns: ['localhost'] });
let tlsUp: Upstream;
let plainUp: Upstream;
let tlsConnections = 0;
let plainConnections = 0;
const routes = new Map<string, RouteRuntime>();
let proxy: ProxyServer;
let port: number;

function route(name: string, upstream: string, caPem: string | undefined): RouteRuntime {
  const config = parseConfig(
    sidecarSchema,
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      routes: { [name]: { upstream, credential: { env: 'UNUSED' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    }),
    { UNUSED: 'x' },
  );
  return new RouteRuntime(name, config.routes[name]!, new HandsOutAnything(cred()), caPem);
}

beforeAll(async () => {
  const tlsServer = createHttpsServer({ key: serverCert.keyPem, cert: serverCert.certPem });
  tlsServer.on('secureConnection', () => tlsConnections++);
  tlsUp = await startUpstream((_req, res) => res.end('ok'), tlsServer);
  const plainServer = createHttpServer();
  plainServer.on('connection', () => plainConnections++);
  plainUp = await startUpstream((_req, res) => res.end('ok'), plainServer);
  routes.set('tls', route('tls', tlsUp.url, ca.certPem));
  routes.set('plain', route('plain', plainUp.url, undefined));
  proxy = new ProxyServer(
    { shuttingDown: () => false, route: (n) => routes.get(n), now: () => 1_000 },
    { requestDone: () => undefined, upstreamAuthFailure: () => undefined },
    createLogger({ level: 'silent', destination: new LogSink() }),
  );
  ({ port } = await proxy.listen('127.0.0.1', 0));
});

afterAll(async () => {
  await proxy?.close(0);
  for (const r of routes.values()) r.close();
  await tlsUp?.close();
  await plainUp?.close();
});

describe("a route's upstream connections are kept alive", () => {
  it('HTTPS: three requests one after another share one TLS connection', async () => {
    for (let i = 0; i < 3; i++) expect((await rawRequest(`http://127.0.0.1:${port}/tls/v1/${i}`)).status).toBe(200);
    expect(tlsConnections).toBe(1);
  });

  it('plain HTTP: three requests one after another share one connection', async () => {
    for (let i = 0; i < 3; i++) expect((await rawRequest(`http://127.0.0.1:${port}/plain/v1/${i}`)).status).toBe(200);
    expect(plainConnections).toBe(1);
  });
});
