import { randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { api, bootstrap } from '../helpers/replicas.js';
import { joinInstance, type Instance } from '../helpers/revoke-authority.js';
import { countEvents, steppableClock } from '../helpers/rotation-sidecar.js';
import type { Clock } from '../../src/core/clock.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';

/**
 * Limits the authority enforces whatever the caller asks or keeps open:
 * - a caller's ttlSeconds can only LOWER the policy's and issuer's maximum;
 * - an identity remembered for a kept-alive mTLS connection stops at the certificate's end;
 * - lease requests per identity are rate-limited (429 with Retry-After), others unaffected;
 * - bootstrap requests per client address too, before the evidence is spent;
 * - identity renewals per identity, on the lease budget: a loop of renewals signed
 *   certificates at will and pushed the fleet's history out of the capped audit stream.
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

/** One credential and a policy granting it to every join:agent-* identity. */
const SEARCH = {
  credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
};

describe('lease requests per identity are rate-limited', () => {
  it('burst 2, 6 a minute: the third call is 429 LEASH_ERR_RATE_LIMITED with Retry-After; another identity is served; one audit event; back after the wait', async () => {
    let stepMs = 0;
    const clock: Clock = { monotonicMs: () => performance.now() + stepMs, wallMs: () => Date.now() + stepMs };
    authority = await startAuthority(
      {
        ...SEARCH,
        limits: { leases: { perMinute: 6, burst: 2 } },
      },
      { clock },
    );
    const one = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const two = await bootstrap(authority.url, authority.caPem, await authority.token('agent-2'));
    const lease = (identity: typeof one.client, credential = 'search') =>
      api<{ error?: { code: string; message: string } }>(authority!.url, authority!.caPem, 'POST', '/v1/leases', { identity, body: { credential } });
    expect((await lease(one.client)).status).toBe(200);
    expect((await lease(one.client)).status).toBe(200);
    const refused = await lease(one.client);
    expect(refused.status).toBe(429);
    expect(refused.body.error?.code).toBe('LEASH_ERR_RATE_LIMITED');
    // One token every 10 s at 6 a minute.
    expect(refused.headers?.['retry-after']).toBe('10');
    // Refused before the policy: an unknown credential is refused the same way, not 403.
    expect((await lease(one.client, 'no-such-credential')).status).toBe(429);
    expect((await lease(one.client)).status).toBe(429);
    // The limit is per identity.
    expect((await lease(two.client)).status).toBe(200);
    // One policy.denied when the identity starts being refused, not one per refused call.
    const denied = authority.logs.events('policy.denied');
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ identity: 'spiffe://leash.local/join/agent-1', credential: 'search', reason: 'rate limited' });
    expect(countEvents(authority.logs, 'lease.issued')).toBe(3);
    const metrics = await api<string>(authority.url, authority.caPem, 'GET', '/metrics');
    expect(metrics.body).toMatch(/^leash_authority_leases_issued_total\{credential="search",result="rate_limited"\} 2$/m);
    expect(metrics.body).toMatch(/^leash_authority_leases_issued_total\{credential="_unknown",result="rate_limited"\} 1$/m);
    // After the wait the bucket holds one again (and only one: the next is refused).
    stepMs += 10_000;
    expect((await lease(one.client)).status).toBe(200);
    expect((await lease(one.client)).status).toBe(429);
  });

  it('a refusal that starts with a name the authority does not define audits its fingerprint, never the name', async () => {
    // A fake, secret-shaped name generated per run (not a real key): what a pasted secret would look like.
    const pasted = `sk-live-${randomBytes(16).toString('hex')}`;
    authority = await startAuthority({ ...SEARCH, limits: { leases: { perMinute: 1, burst: 1 } } });
    const one = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const lease = (credential: string) => api(authority!.url, authority!.caPem, 'POST', '/v1/leases', { identity: one.client, body: { credential } });
    expect((await lease('search')).status).toBe(200);
    const refused = await lease(pasted);
    expect(refused.status).toBe(429);
    const [denied] = authority.logs.events('policy.denied');
    expect(denied).toMatchObject({ reason: 'rate limited', credential: expect.stringMatching(/^unknown:sha256:[0-9a-f]{12}$/) });
    expect(authority.logs.lines.join('\n')).not.toContain(pasted);
    expect(JSON.stringify(refused.body)).not.toContain(pasted);
    expect((await api<string>(authority.url, authority.caPem, 'GET', '/metrics')).body).not.toContain(pasted);
  });

  it('a revoked identity over its limit is still told it is revoked (401), not 429', async () => {
    authority = await startAuthority({
      ...SEARCH,
      limits: { leases: { perMinute: 1, burst: 1 } },
    });
    const one = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const lease = () => api<{ error?: { code: string; message: string } }>(authority!.url, authority!.caPem, 'POST', '/v1/leases', { identity: one.client, body: { credential: 'search' } });
    expect((await lease()).status).toBe(200);
    expect((await lease()).status).toBe(429);
    await authority.running.authority.revoke('test', 'instance', 'spiffe://leash.local/join/agent-1', 'compromised');
    const after = await lease();
    expect(after.status).toBe(401);
    expect(after.body.error?.message).toContain('identity revoked');
  });

  it('perMinute 0 turns the limit off', async () => {
    authority = await startAuthority({
      ...SEARCH,
      limits: { leases: { perMinute: 0, burst: 1 } },
    });
    const one = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    for (let i = 0; i < 5; i++) {
      const r = await api(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: one.client, body: { credential: 'search' } });
      expect(r.status).toBe(200);
    }
  });
});

describe('identity renewals per identity are rate-limited (limits.leases)', () => {
  it('burst 2: the third renewal is 429 with Retry-After and signs nothing; one audit event; another identity renews; leases keep their own budget', async () => {
    let stepMs = 0;
    const clock: Clock = { monotonicMs: () => performance.now() + stepMs, wallMs: () => Date.now() + stepMs };
    authority = await startAuthority({ ...SEARCH, limits: { leases: { perMinute: 6, burst: 2 } } }, { clock });
    const one = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const two = await bootstrap(authority.url, authority.caPem, await authority.token('agent-2'));
    // One CSR reused every time, as a loop would: nothing else stops it.
    const csr = createCsr(createIdentityKey(), 'leash-test');
    const renew = (identity: typeof one.client) =>
      api<{ certificate?: string; error?: { code: string; message: string } }>(authority!.url, authority!.caPem, 'POST', '/v1/identity/renew', { identity, body: { csr } });
    expect((await renew(one.client)).status).toBe(200);
    expect((await renew(one.client)).status).toBe(200);
    const refused = await renew(one.client);
    expect(refused.status).toBe(429);
    expect(refused.headers?.['retry-after']).toBe('10');
    expect(refused.body).toEqual({ error: { code: 'LEASH_ERR_RATE_LIMITED', message: 'too many identity renewals from this identity; retry in 10 s' } });
    expect(refused.body.certificate).toBeUndefined();
    for (let i = 0; i < 5; i++) expect((await renew(one.client)).status).toBe(429);
    expect(countEvents(authority.logs, 'instance.renewed')).toBe(2);
    const denied = authority.logs.events('policy.denied');
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ identity: 'spiffe://leash.local/join/agent-1', reason: 'renewals rate limited' });
    // Per identity; and renewals do not eat the identity's lease budget.
    expect((await renew(two.client)).status).toBe(200);
    const lease = await api(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: one.client, body: { credential: 'search' } });
    expect(lease.status).toBe(200);
    stepMs += 10_000;
    expect((await renew(one.client)).status).toBe(200);
  });
});

describe('bootstrap requests per client address are rate-limited', () => {
  it('burst 1, 60 a minute: the second bootstrap is 429 with Retry-After, its join token not spent; it works after the wait', async () => {
    let stepMs = 0;
    const clock: Clock = { monotonicMs: () => performance.now() + stepMs, wallMs: () => Date.now() + stepMs };
    authority = await startAuthority(
      {
        ...SEARCH,
        limits: { bootstraps: { perMinute: 60, burst: 1 } },
      },
      { clock },
    );
    expect((await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'))).status).toBe(200);
    const token = await authority.token('agent-2');
    const refused = await bootstrap(authority.url, authority.caPem, token);
    expect(refused.status).toBe(429);
    expect(refused.headers?.['retry-after']).toBe('1');
    expect((refused.body as unknown as { error: { code: string; message: string } }).error).toEqual({
      code: 'LEASH_ERR_RATE_LIMITED',
      message: 'too many bootstrap requests from this address; retry in 1 s',
    });
    // Even garbage is refused by the limit first (no CSR check, no attestation).
    expect((await api(authority.url, authority.caPem, 'POST', '/v1/bootstrap', { body: { joinToken: 'x', csr: 'y' } })).status).toBe(429);
    const metrics = await api<string>(authority.url, authority.caPem, 'GET', '/metrics');
    expect(metrics.body).toMatch(/^leash_authority_bootstrap_total\{method="join_token",result="rate_limited"\} 2$/m);
    expect(metrics.body).toMatch(/^leash_authority_bootstrap_total\{method="kubernetes",result="rate_limited"\} 0$/m);
    // One warning when the address starts being refused, naming the address, never a token.
    const warned = authority.logs.lines.filter((l) => l.includes('over limits.bootstraps'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain('"peer":"127.0.0.1"');
    expect(authority.logs.lines.join('\n')).not.toContain(token);
    // The refused call did not spend the join token.
    stepMs += 1_000;
    const later = await bootstrap(authority.url, authority.caPem, token);
    expect(later.status).toBe(200);
    expect(later.body.identity).toBe('spiffe://leash.local/join/agent-2');
    // Leases are limited separately: the new identity leases at once.
    expect((await api(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: later.client, body: { credential: 'search' } })).status).toBe(200);
  });
});
