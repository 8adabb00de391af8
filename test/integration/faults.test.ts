import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { verifyingRoutes, verifyPki, writeCaFiles, type CaFiles } from '../helpers/proxy-tls.js';
import { closedPort, deferred, expectLeashError, rawRequest, within } from '../helpers/proxy-util.js';

/**
 * Upstreams that fail in every way a network can: leash answers each with its own
 * DESIGN §5 error (or cuts a response it had started), and keeps serving afterwards.
 * HTTPS upstreams are always verified; a route's caFile is the only way to trust a
 * private CA.
 */
const SECRET = 'sk-faults-1a2b3c4d5e6f7a8b9c0d';
const inject = { header: 'authorization', format: 'Bearer {{credential}}' };
const allow = ['GET /**', 'POST /**'];

async function rawServer(onSocket: (s: Socket) => void): Promise<{ server: NetServer; url: string; sockets: Set<Socket>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    sockets,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('upstream faults', () => {
  let good: Upstream;
  let resetting: Upstream;
  let hang: Awaited<ReturnType<typeof rawServer>>;
  let garbage: Awaited<ReturnType<typeof rawServer>>;
  let leash: RunningSidecar;
  const hangArrived = deferred();
  const hangClosed = deferred();

  beforeAll(async () => {
    good = await startUpstream((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, auth: req.headers.authorization }));
    });
    resetting = await startUpstream((req, res) => {
      if (req.url?.startsWith('/before')) {
        req.socket.destroy();
        return;
      }
      // Promise 4000 bytes, send 100, then reset the connection.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '4000' });
      res.write(Buffer.alloc(100, 0x61), () => setImmediate(() => req.socket.resetAndDestroy()));
    });
    hang = await rawServer((s) => {
      s.on('data', () => hangArrived.resolve()); // reads the request, never answers
      s.on('close', () => hangClosed.resolve());
    });
    garbage = await rawServer((s) => {
      s.once('data', () => s.end('HELLO\r\n\r\n'));
    });
    const down = await closedPort();
    leash = await startSidecar(
      {
        routes: {
          down: { upstream: `http://127.0.0.1:${down}`, credential: { env: 'KEY' }, inject, allow },
          hang: { upstream: hang.url, credential: { env: 'KEY' }, inject, allow, timeouts: { idle: '300ms' } },
          reset: { upstream: resetting.url, credential: { env: 'KEY' }, inject, allow },
          garbage: { upstream: garbage.url, credential: { env: 'KEY' }, inject, allow },
          good: { upstream: good.url, credential: { env: 'KEY' }, inject, allow },
        },
      },
      { env: { KEY: SECRET } },
    );
  });

  afterAll(async () => {
    await leash?.stop();
    await Promise.all([good?.close(), resetting?.close(), hang?.close(), garbage?.close()]);
  });

  it('an upstream that is down answers 502 leash_upstream_unreachable (DESIGN §5 body)', async () => {
    const r = await rawRequest(`${leash.url}/down/v1/models`);
    const message = expectLeashError(r, 'leash_upstream_unreachable', 502, 'down');
    expect(message).toMatch(/ECONNREFUSED/);
    expect(r.headers['cache-control']).toBe('no-store');
    // A POST with a body gets the same clean answer.
    const p = await rawRequest(`${leash.url}/down/v1/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
    expectLeashError(p, 'leash_upstream_unreachable', 502, 'down');
  });

  it('an upstream that accepts but never answers times out at the route idle timeout: 504', async () => {
    const started = performance.now();
    const r = await rawRequest(`${leash.url}/hang/v1/slow`, { timeoutMs: 3_000 });
    const elapsed = performance.now() - started;
    await hangArrived.promise;
    expectLeashError(r, 'leash_upstream_timeout', 504, 'hang');
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(3_000);
    // leash dropped the hung connection rather than leaving it to pile up.
    await within(hangClosed.promise, 1_000, 'leash to close the hung upstream connection');
    expect(hang.sockets.size).toBe(0);
  });

  it('an upstream that resets before answering gives 502', async () => {
    const r = await rawRequest(`${leash.url}/reset/before`);
    expectLeashError(r, 'leash_upstream_unreachable', 502, 'reset');
  });

  it('an upstream that resets mid-response cuts the agent’s response (never a clean, short success)', async () => {
    const outcome = await within(
      new Promise<{ status: number; received: number; how: string }>((resolve) => {
        const req = httpRequest(`${leash.url}/reset/mid`, { agent: false }, (res) => {
          let received = 0;
          res.on('data', (c: Buffer) => (received += c.length));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, received, how: 'end' }));
          res.on('aborted', () => resolve({ status: res.statusCode ?? 0, received, how: 'aborted' }));
          res.on('error', () => resolve({ status: res.statusCode ?? 0, received, how: 'error' }));
        });
        req.on('error', (err) => resolve({ status: 0, received: 0, how: `request error ${String(err)}` }));
        req.end();
      }),
      3_000,
      'the cut response',
    );
    expect(outcome.status).toBe(200);
    expect(outcome.how).not.toBe('end');
    expect(outcome.received).toBeLessThan(4000);
  });

  it('an upstream that answers garbage bytes gives 502 leash_upstream_bad_response', async () => {
    const r = await rawRequest(`${leash.url}/garbage/v1/models`);
    expectLeashError(r, 'leash_upstream_bad_response', 502, 'garbage');
  });

  it('after all of that the sidecar still serves a good request, and each failure was logged without the secret', async () => {
    const r = await rawRequest(`${leash.url}/good/v1/models`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString())).toEqual({ ok: true, auth: `Bearer ${SECRET}` });
    const health = await rawRequest(`${leash.adminUrl}/healthz`);
    expect(health.status).toBe(200);
    const statuses = leash.logs.events('request').map((e) => `${String(e.route)}:${String(e.status)}`);
    expect(statuses).toEqual(expect.arrayContaining(['down:502', 'hang:504', 'reset:502', 'garbage:502', 'good:200']));
    expect(leash.logs.lines.join('\n')).not.toContain(SECRET);
  });
});

describe('HTTPS upstreams are always verified', () => {
  const pki = verifyPki('leash faults test CA', 'some other CA');
  let tlsUp: Upstream;
  let leash: RunningSidecar;
  let files: CaFiles;
  let seen: string[] = [];

  beforeAll(async () => {
    files = writeCaFiles('leash-tls-', pki);
    tlsUp = await startUpstream(
      (req, res) => {
        seen.push(String(req.headers.authorization));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ tls: true }));
      },
      createHttpsServer(pki.tls),
    );
    expect(tlsUp.url.startsWith('https://')).toBe(true);
    leash = await startSidecar(
      { routes: verifyingRoutes(tlsUp.url, { credential: { env: 'KEY' }, inject, allow }, files) },
      { env: { KEY: SECRET }, caFiles: files.caFiles },
    );
  });

  afterAll(async () => {
    await leash?.stop();
    await tlsUp?.close();
    files?.remove();
  });

  it('with caFile pointing at the CA the request works, credential injected over TLS', async () => {
    seen = [];
    const r = await rawRequest(`${leash.url}/privateca/v1/models`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString())).toEqual({ tls: true });
    expect(seen).toEqual([`Bearer ${SECRET}`]);
  });

  it('without caFile (system roots) the request fails 502 and nothing reaches the upstream', async () => {
    seen = [];
    const r = await rawRequest(`${leash.url}/systemroots/v1/models`);
    const message = expectLeashError(r, 'leash_upstream_unreachable', 502, 'systemroots');
    expect(message).toMatch(/CERT|SIGNED|ISSUER|VERIFY/i);
    expect(seen).toEqual([]);
  });

  it('with a caFile of a different CA the request fails 502 too', async () => {
    seen = [];
    const r = await rawRequest(`${leash.url}/wrongca/v1/models`);
    expectLeashError(r, 'leash_upstream_unreachable', 502, 'wrongca');
    expect(seen).toEqual([]);
  });
});
