import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/** The whole lease path: join token → identity → policy → jwt lease → injected → verified upstream. */
let authority: TestAuthority;
let upstream: Upstream;
let leash: RunningSidecar;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
});

const AUTHORITY_CONFIG = {
  trustDomain: 'leash.local',
  credentials: {
    search: { kind: 'jwt', audience: 'search-api', scopes: ['search:read'], ttl: '5m' },
    secret: { kind: 'jwt', audience: 'other', ttl: '5m' },
  },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
};

function sidecarConfig(credential: string) {
  return {
    authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
    routes: {
      search: { upstream: upstream.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
    },
  };
}

describe('leased credentials', () => {
  it('bootstraps, leases a JWT the upstream verifies strictly, and releases it on shutdown', async () => {
    authority = await startAuthority(AUTHORITY_CONFIG);
    const jwks = createLocalJWKSet(authority.running.keys.jwks());
    upstream = await startUpstream(async (req, res) => {
      const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      try {
        const { payload } = await jwtVerify(token, jwks, { audience: 'search-api', clockTolerance: 0 });
        res.end(JSON.stringify({ sub: payload.sub, scope: payload.scope }));
      } catch (err) {
        res.writeHead(401).end(String((err as Error).message));
      }
    });
    const token = await authority.token('agent-1');
    leash = await startSidecar(sidecarConfig('search'), { authorityCa: authority.caPem, joinToken: () => token });
    const res = await fetch(`${leash.url}/search/v1/query`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ sub: 'spiffe://leash.local/join/agent-1', scope: 'search:read' });
    const status = (await (await fetch(`${leash.adminUrl}/status`)).json()) as {
      instance: { identity: string };
      routes: { search: { lease: string; fingerprint: string; available: boolean; ttlRemainingSeconds: number } };
    };
    expect(status.instance.identity).toBe('spiffe://leash.local/join/agent-1');
    expect(status.routes.search.available).toBe(true);
    expect(status.routes.search.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(status.routes.search.ttlRemainingSeconds).toBeGreaterThan(200);
    const leases = await authority.running.store.listLeases({ instance: 'spiffe://leash.local/join/agent-1' });
    expect(leases.map((l) => l.id)).toEqual([status.routes.search.lease]);
    expect(leash.logs.events('credential.acquired')).toHaveLength(1);
    expect(authority.logs.events('lease.issued')).toHaveLength(1);
    await leash.stop();
    expect(await authority.running.store.listLeases({ instance: 'spiffe://leash.local/join/agent-1' })).toEqual([]);
  });

  it('a credential the policy refuses leaves the route unavailable and is audited at the authority', async () => {
    authority = await startAuthority(AUTHORITY_CONFIG);
    upstream = await startUpstream((_req, res) => res.end('should not be reached'));
    const token = await authority.token('agent-2');
    leash = await startSidecar(sidecarConfig('secret'), { authorityCa: authority.caPem, joinToken: () => token });
    const res = await fetch(`${leash.url}/search/v1/query`);
    expect(res.status).toBe(503);
    expect(res.headers.get('x-leash-error')).toBe('leash_credential_unavailable');
    // At least the first attempt; the sidecar retries a refusal with backoff.
    expect(authority.logs.events('policy.denied').length).toBeGreaterThanOrEqual(1);
    const metrics = await authority.running.metrics.registry.metrics();
    expect(metrics).toMatch(/leash_authority_policy_denials_total\{credential="secret"\} [1-9]/);
    expect((await fetch(`${leash.adminUrl}/readyz`)).status).toBe(503);
  });

  it('refuses a replayed join token: the second sidecar gets no identity and serves nothing', async () => {
    authority = await startAuthority(AUTHORITY_CONFIG);
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const token = await authority.token('agent-3');
    leash = await startSidecar(sidecarConfig('search'), { authorityCa: authority.caPem, joinToken: () => token });
    expect((await fetch(`${leash.url}/search/x`)).status).toBe(200);
    const second = await startSidecar(sidecarConfig('search'), { authorityCa: authority.caPem, joinToken: () => token });
    try {
      expect(second.sidecar.identity?.identity).toBeUndefined();
      const res = await fetch(`${second.url}/search/x`);
      expect(res.status).toBe(503);
      const metrics = await authority.running.metrics.registry.metrics();
      // At least the first attempt; the sidecar may already have retried (with backoff).
      expect(metrics).toMatch(/leash_authority_bootstrap_total\{method="join_token",result="failure"\} [1-9]/);
    } finally {
      await second.stop();
    }
  });
});
