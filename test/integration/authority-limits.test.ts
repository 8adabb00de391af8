import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { api, bootstrap } from '../helpers/replicas.js';
import { joinInstance, type Instance } from '../helpers/revoke-authority.js';
import { steppableClock } from '../helpers/rotation-sidecar.js';

/**
 * Limits the authority enforces whatever the caller asks or keeps open:
 * - a caller's ttlSeconds can only LOWER the policy's and issuer's maximum;
 * - an identity remembered for a kept-alive mTLS connection stops at the certificate's end.
 */
let authority: TestAuthority | undefined;
let instance: Instance | undefined;
afterEach(async () => {
  instance?.close();
  instance = undefined;
  await authority?.stop();
  authority = undefined;
});

describe('lease TTL: the caller may ask for less, never for more', () => {
  it('policy maxTtl 60s, ttlSeconds 3600 asked → a lease of at most 60 s (value and answer)', async () => {
    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '1h' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '60s' }],
    });
    const boot = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    expect(boot.status).toBe(200);
    const ask = (ttlSeconds: number) =>
      api<{ ttlSeconds: number; value: string; expiresAt: string; issuedAt: string }>(authority!.url, authority!.caPem, 'POST', '/v1/leases', {
        identity: boot.client,
        body: { credential: 'search', ttlSeconds },
      });
    const more = await ask(3600);
    expect(more.status).toBe(200);
    expect(more.body.ttlSeconds).toBeLessThanOrEqual(60);
    const claims = decodeJwt(more.body.value);
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(60);
    expect(Date.parse(more.body.expiresAt) - Date.parse(more.body.issuedAt)).toBeLessThanOrEqual(60_000);
    // Asking for less than the maximum is honoured (the caller's value is not ignored).
    const less = await ask(10);
    expect(less.status).toBe(200);
    expect(less.body.ttlSeconds).toBeLessThanOrEqual(10);
  });

  it('issuer ttl 30s under a policy maxTtl of 1h, ttlSeconds 3600 asked → at most 30 s', async () => {
    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '30s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
    });
    const boot = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const more = await api<{ ttlSeconds: number; value: string }>(authority.url, authority.caPem, 'POST', '/v1/leases', {
      identity: boot.client,
      body: { credential: 'search', ttlSeconds: 3600 },
    });
    expect(more.status).toBe(200);
    expect(more.body.ttlSeconds).toBeLessThanOrEqual(30);
    const claims = decodeJwt(more.body.value);
    expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(30);
  });
});

describe('per-connection identity cache ends with the client certificate', () => {
  it('a kept-alive connection whose certificate has expired (authority clock) is refused 401 on its next call', async () => {
    const clock = steppableClock();
    authority = await startAuthority(
      {
        credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
        identity: { ttl: '10m' },
      },
      { clock },
    );
    instance = await joinInstance(authority.url, authority.caPem, await authority.token('agent-1'));
    const first = await instance.lease('search');
    expect(first.status).toBe(200);
    // Past the certificate's notAfter (10 min) by the authority's clock; same socket.
    clock.offsetMs = 11 * 60_000;
    const second = await instance.lease('search');
    expect(instance.sockets.size).toBe(1);
    expect(second.status).toBe(401);
    expect(second.body.value).toBeUndefined();
  });
});
