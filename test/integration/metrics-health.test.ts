import { request } from 'node:https';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { HAVE_PROMTOOL, promtoolCheckMetrics, sample } from '../helpers/promtool.js';
import { startRotationSidecar, steppableClock, waitFor, type RotationSidecar } from '../helpers/rotation-sidecar.js';

/**
 * Credential-health metrics as Prometheus sees them (issue 9, DESIGN §8): a real authority
 * holding leases of known ages (issued under a stepped wall clock) and a real sidecar, both
 * scraped over HTTP(S) and linted by `promtool check metrics`; then the authority goes away
 * past the sidecar's refresh point and leash_credential_refresh_overdue goes 1, and back
 * to 0 when a replacement lease arrives.
 */
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let leash: RotationSidecar | undefined;
let plain: RunningSidecar | undefined;

afterEach(async () => {
  await plain?.stop();
  plain = undefined;
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
  leash = upstream = authority = undefined;
});

function scrapeAuthority(a: TestAuthority): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${a.url}/metrics`, { ca: a.caPem }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`authority /metrics answered ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

const scrapeSidecar = async (s: RotationSidecar) => (await fetch(`${s.adminUrl}/metrics`)).text();

const AGES_S = [30, 200, 2_000, 7_200, 30_000];
const LE = ['60', '300', '900', '1800', '3600', '21600', '86400', '+Inf'];

describe('credential-health metrics', () => {
  it('authority lease-age snapshot and sidecar health gauges, promtool-clean; refresh_overdue follows an authority outage', { timeout: 20_000 }, async () => {
    const clock = steppableClock();
    authority = await startAuthority(
      {
        trustDomain: 'leash.local',
        credentials: {
          search: { kind: 'jwt', audience: 'search-api', ttl: '24h' },
          fast: { kind: 'jwt', audience: 'fast-api', ttl: '3s' },
        },
        policies: [{ identities: ['join:agent-*'], credentials: ['search', 'fast'], maxTtl: '24h' }],
      },
      { clock },
    );
    // Leases of known ages: each issued with the wall clock stepped back by its age.
    for (const age of AGES_S) {
      clock.offsetMs = -age * 1000;
      await authority.running.authority.lease('spiffe://leash.local/join/agent-old', { credential: 'search' });
    }
    clock.offsetMs = 0;

    upstream = await startUpstream((_req, res) => void res.end('ok'));
    const token = await authority.token('agent-metrics');
    leash = await startRotationSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        // Refresh at exactly ½ TTL (1.5 s), retries fast once the authority is back.
        rotation: { at: 0.5, jitter: 0, backoff: { base: '50ms', cap: '200ms' } },
        routes: {
          svc: { upstream: upstream.url, credential: 'fast', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
          static: { upstream: upstream.url, credential: { env: 'STATIC_TOKEN' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
        },
      },
      { authorityCa: authority.caPem, joinToken: () => token, env: { STATIC_TOKEN: 'static-not-a-secret-0123456789' } },
    );
    expect((await fetch(`${leash.url}/svc/v1/q`)).status).toBe(200);

    // --- authority ---
    const a = await scrapeAuthority(authority);
    if (HAVE_PROMTOOL) expect(promtoolCheckMetrics(a)).toBe('');
    const age = (le: string) => sample(a, `leash_authority_active_lease_age_seconds{credential="search",le="${le}"}`);
    // Cumulative: ≤60 s: 30; ≤300: +200; ≤3600: +2000; ≤21600: +7200; ≤86400: +30000.
    expect(LE.map(age)).toEqual([1, 2, 2, 2, 3, 4, 5, 5]);
    expect(a).toMatch(/^# TYPE leash_authority_active_lease_age_seconds untyped$/m);
    const oldest = sample(a, 'leash_authority_oldest_active_lease_seconds{credential="search"}')!;
    expect(oldest).toBeGreaterThanOrEqual(30_000);
    expect(oldest).toBeLessThan(30_010);
    expect(sample(a, 'leash_authority_leases_active{credential="search"}')).toBe(5);
    expect(sample(a, 'leash_authority_leases_active{credential="fast"}')).toBe(1);
    expect(sample(a, 'leash_authority_active_lease_age_seconds{credential="fast",le="60"}')).toBe(1);
    expect(sample(a, 'leash_authority_leases_issued_total{credential="search",result="issued"}')).toBe(5);
    expect(sample(a, 'leash_authority_leases_issued_total{credential="search",result="failed"}')).toBe(0);
    expect(sample(a, 'leash_authority_leases_issued_total{credential="_unknown",result="denied"}')).toBe(0);
    expect(sample(a, 'leash_authority_revocations_total{scope="credential"}')).toBe(0);
    expect(sample(a, 'leash_authority_bootstrap_total{method="renew",result="failure"}')).toBe(0);
    expect(a).toMatch(/^leash_build_info\{version="[^"]+"\} 1$/m);
    expect(a).toMatch(/^process_cpu_seconds_total /m);
    expect(a).toMatch(/^nodejs_heap_size_used_bytes /m);

    // --- sidecar ---
    const s = await scrapeSidecar(leash);
    if (HAVE_PROMTOOL) expect(promtoolCheckMetrics(s)).toBe('');
    expect(sample(s, 'leash_requests_total{route="svc",method="GET",code="200"}')).toBe(1);
    expect(sample(s, 'leash_requests_total{route="static",method="POST",code="503"}')).toBe(0);
    expect(sample(s, 'leash_credential_rotations_total{route="svc",result="failure"}')).toBe(0);
    expect(sample(s, 'leash_requests_denied_total{route="svc",reason="leash_credential_unavailable"}')).toBe(0);
    expect(sample(s, 'leash_upstream_auth_failures_total{route="svc",status="401"}')).toBe(0);
    expect(sample(s, 'leash_revocations_applied_total{scope="lease"}')).toBe(0);
    expect(sample(s, 'leash_credential_refresh_overdue{route="svc"}')).toBe(0);
    expect(sample(s, 'leash_credential_refresh_overdue{route="static"}')).toBe(0);
    expect(sample(s, 'leash_identity_ttl_remaining_seconds')).toBeGreaterThan(0);
    expect(s).toMatch(/^leash_build_info\{version="[^"]+"\} 1$/m);
    expect(s).toMatch(/^process_cpu_seconds_total /m);
    expect(s).toMatch(/^nodejs_eventloop_lag_seconds /m);

    // --- the authority goes away past the refresh point (rotation-outage style) ---
    const port = Number(new URL(authority.url).port);
    const server = authority.running.server.server;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
    const overdue = async () => sample(await scrapeSidecar(leash!), 'leash_credential_refresh_overdue{route="svc"}');
    // Past the refresh point with the refresh failed: overdue, and the failure counted from 0.
    const during = await waitFor(
      async () => {
        const t = await scrapeSidecar(leash!);
        const failed = sample(t, 'leash_credential_rotations_total{route="svc",result="failure"}')! >= 1;
        return failed && sample(t, 'leash_credential_refresh_overdue{route="svc"}') === 1 ? t : undefined;
      },
      'refresh_overdue to go 1 past the refresh point',
      3_000,
      50,
    );
    expect(sample(during, 'leash_credential_refresh_overdue{route="static"}')).toBe(0);

    await authority.running.server.listen('127.0.0.1', port);
    await waitFor(async () => (await overdue()) === 0, 'refresh_overdue back to 0 once a new lease arrives', 3_000, 50);
    expect(sample(await scrapeSidecar(leash), 'leash_credential_available{route="svc"}')).toBe(1);
  });

  it('what a process does not have is absent, never a 0 an alert reads: identity TTL and revocation channel without an authority or revocations, the store clock offset without Redis', { timeout: 20_000 }, async () => {
    // A sidecar with an environment credential only: no authority (no identity), no revocations: section.
    upstream = await startUpstream((_req, res) => void res.end('ok'));
    plain = await startSidecar(
      { routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } } },
      { env: { KEY: 'env-not-a-secret-0123456789' } },
    );
    expect((await fetch(`${plain.url}/api/x`)).status).toBe(200);
    const s = await (await fetch(`${plain.adminUrl}/metrics`)).text();
    if (HAVE_PROMTOOL) expect(promtoolCheckMetrics(s)).toBe('');
    // 0 here fired LeashIdentityNearExpiry (< 600) and LeashRevocationChannelDown (== 0), both
    // critical, on every sidecar without an authority or revocations (deploy/monitoring).
    expect(sample(s, 'leash_identity_ttl_remaining_seconds')).toBeUndefined();
    expect(sample(s, 'leash_revocation_channel_up')).toBeUndefined();
    // Still declared: the metric exists (test/integration/monitoring-metrics.test.ts), it has no value.
    expect(s).toMatch(/^# TYPE leash_identity_ttl_remaining_seconds gauge$/m);
    expect(s).toMatch(/^# TYPE leash_revocation_channel_up gauge$/m);
    expect(sample(s, 'leash_credential_available{route="api"}')).toBe(1);

    // An authority without Redis has no store clock to be off from.
    authority = await startAuthority({
      trustDomain: 'leash.local',
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    const a = await scrapeAuthority(authority);
    if (HAVE_PROMTOOL) expect(promtoolCheckMetrics(a)).toBe('');
    expect(sample(a, 'leash_authority_store_clock_offset_seconds')).toBeUndefined();
    expect(a).toMatch(/^# TYPE leash_authority_store_clock_offset_seconds gauge$/m);
  });
});
