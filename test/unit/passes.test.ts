import { describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { runPasses } from '../../src/sidecar/proxy/passes.js';
import { errorBody } from '../../src/sidecar/proxy/respond.js';
import { contextOf, envFor, HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';

/**
 * The ordered request passes (STYLE 9) on their own, without a socket: what each refuses,
 * with which error, and what the request that goes upstream carries.
 */
const VALUE = 'sk-passes-test-credential-0123456789';
const held: HeldCredential = { value: VALUE, fingerprint: 'fp', acquiredAtMs: 0, expiresAtMs: undefined, lease: undefined };
const UP = 'http://127.0.0.1:1/base';

function run(method: string, path: string, opts: { raw?: string[]; upgrade?: boolean; route?: Record<string, unknown>; shuttingDown?: boolean; cred?: HeldCredential } = {}) {
  const provider = new HandsOutAnything(opts.cred ?? held);
  const route = routeFor(UP, provider, opts.route);
  const req = requestOf(method, path, opts.raw);
  const ctx = contextOf(opts.upgrade);
  const err = runPasses(req, ctx, envFor(route, () => 0, () => opts.shuttingDown === true));
  route.close();
  return { err, ctx, req, provider };
}

describe('request passes: what is refused, and why', () => {
  it('shutting down: refused before anything else', () => {
    expect(run('GET', '/search/x', { shuttingDown: true }).err?.code).toBe('LEASH_ERR_SHUTTING_DOWN');
  });
  it('CONNECT and a duplicate Host are refused as bad requests, with the reason', () => {
    const connect = run('CONNECT', 'example.com:443').err;
    expect(connect?.code).toBe('LEASH_ERR_BAD_REQUEST');
    expect(connect?.message).toMatch(/CONNECT/);
    const dup = run('GET', '/search/x', { raw: ['Host', '127.0.0.1', 'Host', 'evil.example'] });
    expect(dup.err?.code).toBe('LEASH_ERR_BAD_REQUEST');
    expect(dup.err?.message).toMatch(/Host/);
    expect(dup.ctx.credential).toBeUndefined();
  });
  it('an unknown route is named in the refusal', () => {
    const r = run('GET', '/nope/x');
    expect(r.err?.code).toBe('LEASH_ERR_NO_ROUTE');
    expect(r.err?.message).toContain('"nope"');
  });
  it('a method/path outside the allowlist is denied, naming both and the route', () => {
    const r = run('POST', '/search/v1/x');
    expect(r.err?.code).toBe('LEASH_ERR_DENIED');
    expect(r.err?.message).toBe('POST /v1/x is not allowed on this route');
    expect(r.err?.context).toMatchObject({ route: 'search' });
    expect(r.ctx.credential).toBeUndefined();
  });
  it('a request without a method is judged as GET', () => {
    const r = run(undefined as unknown as string, '/search/v1/x', { route: { allow: ['GET /**'] } });
    expect(r.err).toBeUndefined();
    const denied = run(undefined as unknown as string, '/search/v1/x', { route: { allow: ['POST /**'] } });
    expect(denied.err?.message).toBe('GET /v1/x is not allowed on this route');
  });
  it('a WebSocket upgrade on a route with websocket: false is denied; allowed otherwise', () => {
    const r = run('GET', '/search/ws', { upgrade: true, route: { websocket: false } });
    expect(r.err?.code).toBe('LEASH_ERR_DENIED');
    expect(r.err?.message).toMatch(/WebSocket/);
    expect(r.err?.context).toMatchObject({ route: 'search' });
    expect(run('GET', '/search/ws', { upgrade: true }).err).toBeUndefined();
  });
  it('no credential held: 503 naming the route, and the provider is told', () => {
    const provider = new HandsOutAnything(undefined);
    const route = routeFor(UP, provider);
    const err = runPasses(requestOf('GET', '/search/x'), contextOf(), envFor(route, () => 0));
    expect(err?.code).toBe('LEASH_ERR_CREDENTIAL_UNAVAILABLE');
    expect(err?.message).toBe('no valid credential is held for this route');
    expect(err?.context).toMatchObject({ route: 'search' });
    expect(provider.unavailable).toBe(1);
    route.close();
  });
  it('revocation channel down too long (gate closed): a leased credential is not sent, 503 naming the route; a static one still is', () => {
    const leased: HeldCredential = { ...held, lease: 'L-passes-1' };
    const attempt = (cred: HeldCredential, closed: boolean) => {
      const route = routeFor(UP, new HandsOutAnything(cred));
      const ctx = contextOf();
      const err = runPasses(requestOf('GET', '/search/x'), ctx, { ...envFor(route, () => 0), revocationGate: { closed, downSeconds: () => 42 } });
      route.close();
      return { err, ctx };
    };
    const refused = attempt(leased, true);
    expect(refused.err?.code).toBe('LEASH_ERR_CREDENTIAL_UNAVAILABLE');
    expect(refused.err?.status).toBe(503);
    expect(refused.err?.message).toContain('42 s (revocations.failClosedAfter)');
    expect(refused.ctx.credential).toBeUndefined();
    // The agent-facing body names the route (docs/errors.md: null only before a route is resolved).
    expect(JSON.parse(errorBody(refused.err!))).toMatchObject({ error: { type: 'leash_credential_unavailable', route: 'search' } });
    expect(attempt(held, true).err).toBeUndefined();
    const open = attempt(leased, false);
    expect(open.err).toBeUndefined();
    expect(open.ctx.outgoingHeaders.authorization).toBe(`Bearer ${VALUE}`);
  });
});

describe('request passes: what goes upstream', () => {
  it('header injection: the agent’s own credential header is replaced; Host is the upstream’s; base path kept', () => {
    const r = run('GET', '/search/v1/x?q=1', { raw: ['Host', '127.0.0.1', 'Authorization', 'Bearer agent-own', 'Accept-Encoding', 'gzip, zstd'] });
    expect(r.err).toBeUndefined();
    expect(r.req.headers.authorization).toBeUndefined();
    expect(r.ctx.outgoingHeaders).toEqual({ host: '127.0.0.1:1', authorization: `Bearer ${VALUE}` });
    expect(r.ctx.upstreamPath).toBe('/base/v1/x?q=1');
    // Only encodings leash can decode (to scrub error bodies) are asked for.
    expect(r.req.headers['accept-encoding']).toBe('gzip');
    // Not an upgrade: no Upgrade/Connection headers are added.
    expect(r.req.headers.upgrade).toBeUndefined();
    expect(r.req.headers.connection).toBeUndefined();
  });
  it('an upgrade gets its Upgrade/Connection headers back after the hop-by-hop strip', () => {
    const r = run('GET', '/search/ws', { upgrade: true, raw: ['Host', '127.0.0.1', 'Connection', 'Upgrade', 'Upgrade', 'websocket'] });
    expect(r.err).toBeUndefined();
    expect(r.req.headers.upgrade).toBe('websocket');
    expect(r.req.headers.connection).toBe('Upgrade');
  });
  it('query injection: the agent’s own parameter of that name is replaced, others kept, value encoded', () => {
    const cred = { ...held, value: 'k y/+=' };
    const r = run('GET', '/search/v1/x?key=agent-own&q=1', { route: { inject: { query: 'key' } }, cred });
    expect(r.err).toBeUndefined();
    expect(r.ctx.upstreamPath).toBe(`/base/v1/x?q=1&key=${encodeURIComponent('k y/+=')}`);
    expect(r.ctx.outgoingHeaders).toEqual({ host: '127.0.0.1:1' });
    const bare = run('GET', '/search/v1/x', { route: { inject: { query: 'key' } } });
    expect(bare.ctx.upstreamPath).toBe(`/base/v1/x?key=${VALUE}`);
  });
  it('basic injection: Authorization is Basic base64(username:value)', () => {
    const r = run('GET', '/search/x', { route: { inject: { basic: { username: 'u' } } } });
    expect(r.ctx.outgoingHeaders.authorization).toBe(`Basic ${Buffer.from(`u:${VALUE}`).toString('base64')}`);
  });
});
