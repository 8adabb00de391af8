import { request } from 'node:http';
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { leasedRoute, leasedSidecar, statusOf } from '../helpers/leased-sidecar.js';
import { stopAfterEach } from '../helpers/teardown.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A request beyond the route's `maxSockets` waits in the pool's queue with the credential
 * it took before queueing. Nothing looked at that credential again when a socket freed up:
 * it left past its expiry, or revoked, seconds later — and an agent holding the route's
 * sockets with slow uploads chose when. The credential is now checked again when the
 * request gets its socket, before a byte is written; a stale one is 503
 * leash_credential_unavailable and never reaches the upstream.
 */
const started = stopAfterEach();
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Sidecar | undefined;

interface Seen {
  path: string;
  jti: string;
  exp: number;
  at: number;
}

async function setup(ttl: string) {
  authority = await startAuthority({
    credentials: { api: { kind: 'jwt', audience: 'api', ttl } },
    policies: [{ identities: ['join:agent-*'], credentials: ['api'] }],
  });
  started(authority, (a) => a!.stop());
  const seen: Seen[] = [];
  upstream = await startUpstream((req, res) => {
    const claims = decodeJwt(String(req.headers.authorization).slice(7));
    seen.push({ path: req.url!, jti: String(claims.jti), exp: claims.exp!, at: Date.now() });
    if (req.url!.startsWith('/upload')) {
      req.resume();
      req.on('end', () => res.end('uploaded'));
      return;
    }
    if (req.url!.startsWith('/slow')) {
      // Holds the route's only socket, as a long generation or an SSE stream does.
      const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms'));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const t = setInterval(() => res.write('data: tick\n\n'), 500);
      setTimeout(() => {
        clearInterval(t);
        res.end('data: done\n\n');
      }, ms);
      return;
    }
    res.end('ok');
  });
  started(upstream, (u) => u!.close());
  const bus = new MemoryRevocationBus();
  ({ sidecar } = await leasedSidecar(authority, { api: leasedRoute(upstream.url, 'api', { maxSockets: 1, allow: ['GET /**', 'POST /upload'] }) }, { bus, extra: { shutdown: { grace: '2s' } } }));
  started(sidecar, (x) => x!.stop());
  const addrs = await sidecar.start();
  const base = `http://127.0.0.1:${addrs.proxy.port}/api`;
  const status = () => statusOf(addrs.admin.port);
  await waitFor(async () => (await status()).routes.api!.lease !== null, { timeoutMs: 5_000, intervalMs: 20, message: 'lease' });
  return { base, seen, bus, status };
}

const answer = (url: string) => fetch(url).then(async (r) => ({ status: r.status, body: await r.text() }));

describe('a request queued for an upstream socket', () => {
  it('whose lease passed its safety margin while it waited: 503, never sent expired', async () => {
    const { base, seen } = await setup('4s');
    const slow = fetch(`${base}/slow?ms=5000`).then((r) => r.text());
    await sleep(200);
    const queued = answer(`${base}/queued`);
    await slow;
    const q = await queued;
    const sent = seen.filter((s) => s.path === '/queued');
    // Either refused, or sent with a fresh lease that was still valid: never past its exp.
    for (const s of sent) expect(s.at, `sent ${s.at - s.exp * 1000} ms after its exp`).toBeLessThan(s.exp * 1000);
    if (sent.length === 0) expect(q.status).toBe(503);
    expect(q.body).not.toMatch(/eyJ/);
  }, 20_000);

  it('whose lease was revoked while it waited: 503, never sent with the revoked lease', async () => {
    const { base, seen, bus, status } = await setup('5m');
    const revoked = (await status()).routes.api!.lease!;
    // The stream holding the socket was sent with the lease being revoked: the revocation ends
    // it too — answered 503 if its head has not reached the agent yet, cut if it has (the
    // upstream's first tick and the revocation race; either is right, finishing is not).
    const slow = fetch(`${base}/slow?ms=2000`).then(
      (r) => r.text().then((body) => ({ status: r.status, body }), () => 'cut' as const),
      () => 'cut' as const,
    );
    await sleep(200);
    const queued = answer(`${base}/queued`);
    await sleep(300);
    await bus.publish({ scope: 'lease', target: revoked, reason: 'leaked', by: 'test' });
    await waitFor(async () => (await status()).routes.api!.lease !== revoked, { timeoutMs: 5_000, intervalMs: 20, message: 're-lease' });
    const s = await slow;
    if (s !== 'cut') {
      expect(s.status).toBe(503);
      expect(s.body).not.toContain('data: done');
    }
    const q = await queued;
    expect(seen.filter((s) => s.path === '/queued' && s.jti === revoked)).toEqual([]);
    expect(q.status).toBe(503);
    expect(q.body).toContain('leash_credential_unavailable');
  }, 20_000);

  it('an agent holding the socket with a slow upload cannot send a queued request after an instance cut-off', async () => {
    const { base, seen, bus, status } = await setup('5m');
    const before = await status();
    const u = new URL(`${base}/upload`);
    const upload = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
    upload.on('error', () => undefined);
    upload.write('x');
    const trickle = setInterval(() => upload.write('x'), 300);
    try {
      await sleep(300);
      const queued = fetch(`${base}/queued`).then(
        (r) => r.status,
        () => 0,
      );
      await sleep(300);
      await bus.publish({ scope: 'instance', target: before.instance.identity, reason: 'pod compromised', by: 'test' });
      await sleep(1_000); // the agent waits as long as it likes after the cut-off
      clearInterval(trickle);
      upload.end();
      expect(await queued).toBe(503);
      expect(seen.filter((s) => s.path === '/queued')).toEqual([]);
    } finally {
      clearInterval(trickle);
      upload.destroy();
    }
  }, 20_000);
});
