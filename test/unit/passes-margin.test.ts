import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { runPasses } from '../../src/sidecar/proxy/passes.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { contextOf, envFor, HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';

/**
 * The proxy's own fail-closed check (DESIGN §6): whatever a provider hands out, a
 * credential inside the safety margin of its expiry is never sent. LeaseCredential.current()
 * checks this too, so the proxy's check is tested here with a provider that does not.
 * The margin is the real one (rotation.ts usable): for these credentials' ~65 s TTL,
 * the 5 s floor.
 */
const VALUE = 'sk-margin-test-credential-0123456789';
const MARGIN_MS = 5_000;
let nowMs = 1_000_000;

const cred = (expiresInMs: number): HeldCredential => ({
  value: VALUE,
  fingerprint: 'fp-test',
  acquiredAtMs: nowMs - 60_000,
  expiresAtMs: nowMs + expiresInMs,
  lease: 'L-test',
});

const envOf = (route: RouteRuntime) => envFor(route, () => nowMs);
const request = (path: string) => requestOf('GET', path);
const context = () => contextOf();

let upstream: Upstream | undefined;
let proxy: ProxyServer | undefined;
afterEach(async () => {
  proxy?.server.closeAllConnections();
  await new Promise<void>((r) => (proxy ? proxy.server.close(() => r()) : r()));
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

describe('takeCredential: the safety margin is the proxy’s own check', () => {
  it('runPasses refuses a credential inside its margin (503) and builds nothing to send', () => {
    const provider = new HandsOutAnything(cred(MARGIN_MS - 1));
    const route = routeFor('http://127.0.0.1:1', provider);
    const ctx = context();
    const err = runPasses(request('/search/x'), ctx, envOf(route));
    expect(err?.code).toBe('LEASH_ERR_CREDENTIAL_UNAVAILABLE');
    expect(err?.status).toBe(503);
    expect(ctx.credential).toBeUndefined();
    expect(JSON.stringify(ctx.outgoingHeaders)).not.toContain(VALUE);
    expect(provider.unavailable).toBe(1);
    route.close();
  });

  it('exactly at the margin is refused too; just outside it is sent', () => {
    const provider = new HandsOutAnything(cred(MARGIN_MS));
    const route = routeFor('http://127.0.0.1:1', provider);
    expect(runPasses(request('/search/x'), context(), envOf(route))?.status).toBe(503);
    provider.held = cred(MARGIN_MS + 1);
    const ctx = context();
    expect(runPasses(request('/search/x'), ctx, envOf(route))).toBeUndefined();
    expect(ctx.outgoingHeaders.authorization).toBe(`Bearer ${VALUE}`);
    route.close();
  });

  it('through a real proxy: 503 to the agent and no upstream call', async () => {
    let calls = 0;
    upstream = await startUpstream((_req, res) => {
      calls++;
      res.end('ok');
    });
    const provider = new HandsOutAnything(cred(MARGIN_MS - 1));
    const route = routeFor(upstream.url, provider);
    proxy = new ProxyServer(envOf(route), { requestDone: () => undefined, upstreamAuthFailure: () => undefined }, createLogger({ level: 'silent', destination: new LogSink() }));
    const addr = await proxy.listen('127.0.0.1', 0);
    const res = await fetch(`http://127.0.0.1:${addr.port}/search/x`);
    expect(res.status).toBe(503);
    expect(res.headers.get('x-leash-error')).toBe('leash_credential_unavailable');
    expect(await res.text()).not.toContain(VALUE);
    expect(calls).toBe(0);
    // The same provider outside its margin: forwarded (the test can tell the difference).
    provider.held = cred(MARGIN_MS + 10_000);
    expect((await fetch(`http://127.0.0.1:${addr.port}/search/x`)).status).toBe(200);
    expect(calls).toBe(1);
    route.close();
  });
});
