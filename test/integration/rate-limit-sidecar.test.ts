import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { api, bootstrap } from '../helpers/replicas.js';
import type { Upstream } from '../helpers/harness.js';
import { startRotationSidecar, startStrictJwtUpstream, waitFor, type RotationSidecar, type UpstreamStats } from '../helpers/rotation-sidecar.js';

/**
 * A sidecar with more routes than the authority's per-identity burst still comes up: the
 * leases over the burst are answered 429 with Retry-After, the sidecar waits that out and
 * asks again, and every route becomes ready; nothing is forwarded without a credential.
 */
let authority: TestAuthority | undefined;
let upstream: (Upstream & { stats: UpstreamStats }) | undefined;
let leash: RotationSidecar | undefined;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
  leash = undefined;
  upstream = undefined;
  authority = undefined;
});

describe('a sidecar under the authority rate limit', () => {
  it('4 routes, burst 2 at 60 a minute: two leased at once, the others after Retry-After, all ready within a few seconds', async () => {
    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
      limits: { leases: { perMinute: 60, burst: 2 } },
    });
    upstream = await startStrictJwtUpstream({ jwks: authority.running.keys.jwks(), audience: () => 'search-api' });
    const token = await authority.token('agent-rl');
    const route = { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] };
    const started = performance.now();
    leash = await startRotationSidecar(
      { authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } }, routes: { r1: route, r2: route, r3: route, r4: route } },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
    const ready = await waitFor(async () => ((await fetch(`${leash!.adminUrl}/readyz`)).status === 200 ? true : undefined), 'every route ready', 15_000, 50);
    expect(ready).toBe(true);
    const tookMs = performance.now() - started;
    // Refused at first, by the limit: the sidecar saw 429s and counted them as failed refreshes.
    const failed = leash.audit.of('credential.refresh_failed');
    expect(failed.length).toBeGreaterThanOrEqual(2);
    for (const f of failed) expect(JSON.stringify(f.fields)).toContain('429');
    // …and waited at least the Retry-After (1 s at 60 a minute) before the third lease.
    expect(tookMs).toBeGreaterThanOrEqual(1_000);
    // One event each time the identity starts being refused (here at most once per route over the burst), not one per refused call.
    const denied = authority.logs.events('policy.denied').filter((e) => e.reason === 'rate limited').length;
    expect(denied).toBeGreaterThanOrEqual(1);
    expect(denied).toBeLessThanOrEqual(2);
    expect(denied).toBeLessThan(failed.length + 1);
    for (const r of ['r1', 'r2', 'r3', 'r4']) {
      const res = await fetch(`${leash.url}/${r}/v1/x`);
      expect(res.status, r).toBe(200);
    }
    // Nothing reached the upstream without a valid token.
    expect(upstream.stats.failed).toBe(0);
    expect(upstream.stats.ok).toBe(4);
  }, 30_000);

  it("a bootstrap refused by limits.bootstraps is asked again once, after the authority's Retry-After", async () => {
    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
      limits: { bootstraps: { perMinute: 60, burst: 1 } },
    });
    upstream = await startStrictJwtUpstream({ jwks: authority.running.keys.jwks(), audience: () => 'search-api' });
    // Another client on this address takes the one bootstrap the bucket holds.
    expect((await bootstrap(authority.url, authority.caPem, await authority.token('agent-other'))).status).toBe(200);
    const token = await authority.token('agent-rl');
    const route = { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] };
    leash = await startRotationSidecar(
      { authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } }, routes: { r1: route } },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
    await waitFor(async () => ((await fetch(`${leash!.adminUrl}/readyz`)).status === 200 ? true : undefined), 'ready', 15_000, 50);
    const metrics = (await api<string>(authority.url, authority.caPem, 'GET', '/metrics')).body;
    // Refused once (backoff alone would have asked again within 0.5 s, and been refused again).
    expect(metrics).toMatch(/^leash_authority_bootstrap_total\{method="join_token",result="rate_limited"\} 1$/m);
    expect(metrics).toMatch(/^leash_authority_bootstrap_total\{method="join_token",result="success"\} 2$/m);
    expect((await fetch(`${leash.url}/r1/v1/x`)).status).toBe(200);
  }, 30_000);
});
