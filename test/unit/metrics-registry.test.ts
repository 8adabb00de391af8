import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HTTP_ERROR_TYPES } from '../../src/core/errors.js';
import { AuthorityMetrics, LEASE_AGE_BUCKETS, LEASE_SCAN_LIMIT, LEASE_SNAPSHOT_TTL_MS, summariseLeaseAges, type ActiveLeaseView } from '../../src/telemetry/authority-metrics.js';
import { NO_ROUTE, SidecarMetrics, type CredentialGaugeState } from '../../src/telemetry/metrics.js';
import { AnomalyMetrics } from '../../src/telemetry/anomaly-metrics.js';
import { packageVersion } from '../../src/bin/version.js';
import { HAVE_PROMTOOL, promtoolCheckMetrics, sample } from '../helpers/promtool.js';

const LE = [...LEASE_AGE_BUCKETS.map(String), '+Inf'];

describe('summariseLeaseAges', () => {
  it('counts cumulatively per credential, with zeros for configured credentials without leases', () => {
    const leases: ActiveLeaseView[] = [30, 200, 2000, 7200, 30_000, 100_000].map((ageSeconds) => ({ credential: 'a', ageSeconds }));
    leases.push({ credential: 'b', ageSeconds: -3 }); // wall clock stepped back: age 0
    const s = summariseLeaseAges(leases, ['a', 'b', 'c']);
    expect(s.get('a')).toEqual({ active: 6, cumulative: [1, 2, 2, 2, 3, 4, 5, 6], oldestSeconds: 100_000 });
    expect(s.get('b')).toEqual({ active: 1, cumulative: [1, 1, 1, 1, 1, 1, 1, 1], oldestSeconds: 0 });
    expect(s.get('c')).toEqual({ active: 0, cumulative: [0, 0, 0, 0, 0, 0, 0, 0], oldestSeconds: undefined });
    // A lease exactly at a bound is in that bucket (le = less or equal).
    expect(summariseLeaseAges([{ credential: 'a', ageSeconds: 60 }], []).get('a')!.cumulative[0]).toBe(1);
  });
});

describe('AuthorityMetrics', () => {
  function make(leases: () => Promise<readonly ActiveLeaseView[]>) {
    let t = 0;
    const limits: number[] = [];
    const m = new AuthorityMetrics(
      (limit) => {
        limits.push(limit);
        return leases();
      },
      { credentials: ['search', 'idle'], version: '1.2.3', now: () => t },
    );
    return { m, limits, advance: (ms: number) => (t += ms) };
  }

  it('lease-age snapshot gauges, oldest lease, pre-created counters, build_info, standard default metrics; promtool-clean', async () => {
    const { m, limits } = make(async () => [30, 200, 2000].map((ageSeconds) => ({ credential: 'search', ageSeconds })));
    const text = await m.registry.metrics();
    const age = (c: string, le: string) => sample(text, `leash_authority_active_lease_age_seconds{credential="${c}",le="${le}"}`);
    expect(LE.map((le) => age('search', le))).toEqual([1, 2, 2, 2, 3, 3, 3, 3]);
    expect(LE.map((le) => age('idle', le))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    // Snapshot, not a histogram: no _bucket/_sum/_count series that rate() would misread.
    expect(text).not.toMatch(/leash_authority_active_lease_age_seconds_(bucket|sum|count)/);
    expect(sample(text, 'leash_authority_oldest_active_lease_seconds{credential="search"}')).toBe(2000);
    expect(sample(text, 'leash_authority_oldest_active_lease_seconds{credential="idle"}')).toBeUndefined();
    expect(sample(text, 'leash_authority_leases_active{credential="search"}')).toBe(3);
    expect(sample(text, 'leash_authority_leases_active{credential="idle"}')).toBe(0);
    expect(sample(text, 'leash_authority_lease_snapshot_truncated')).toBe(0);
    // One bounded store read served every lease collector of the scrape.
    expect(limits).toEqual([LEASE_SCAN_LIMIT]);

    for (const c of ['search', 'idle', '_unknown']) {
      for (const r of ['issued', 'denied', 'failed']) expect(sample(text, `leash_authority_leases_issued_total{credential="${c}",result="${r}"}`)).toBe(0);
      expect(sample(text, `leash_authority_policy_denials_total{credential="${c}"}`)).toBe(0);
    }
    for (const method of ['join_token', 'renew']) for (const r of ['success', 'failure']) expect(sample(text, `leash_authority_bootstrap_total{method="${method}",result="${r}"}`)).toBe(0);
    for (const scope of ['lease', 'instance', 'credential', 'all']) expect(sample(text, `leash_authority_revocations_total{scope="${scope}"}`)).toBe(0);
    expect(sample(text, 'leash_build_info{version="1.2.3"}')).toBe(1);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
    expect(text).not.toMatch(/^leash_authority_(process|nodejs)_/m);
    expect(text).not.toMatch(/^nodejs_active_handles_total /m);
    if (HAVE_PROMTOOL) expect(promtoolCheckMetrics(text)).toBe('');
  });

  it('reads the store at most once per snapshot TTL, and reports no lease series when the read fails', async () => {
    let calls = 0;
    let fail = false;
    const { m, advance } = make(async () => {
      calls++;
      if (fail) throw new Error('redis down');
      return [{ credential: 'search', ageSeconds: 10 }];
    });
    await m.registry.metrics();
    await m.registry.metrics();
    expect(calls).toBe(1);
    fail = true;
    advance(LEASE_SNAPSHOT_TTL_MS);
    const text = await m.registry.metrics();
    expect(calls).toBe(2);
    // Absent rather than 0: "no leases" would be a lie when the store could not be read.
    expect(text).not.toMatch(/^leash_authority_leases_active\{/m);
    expect(text).not.toMatch(/^leash_authority_active_lease_age_seconds\{/m);
    expect(text).not.toMatch(/^leash_authority_oldest_active_lease_seconds\{/m);
  });

  it('says when the snapshot hit its limit', async () => {
    const { m } = make(async () => Array.from({ length: LEASE_SCAN_LIMIT }, () => ({ credential: 'search', ageSeconds: 1 })));
    expect(sample(await m.registry.metrics(), 'leash_authority_lease_snapshot_truncated')).toBe(1);
  });
});

describe('SidecarMetrics', () => {
  const states: CredentialGaugeState[] = [
    { route: 'llm', available: true, refreshOverdue: true, ageSeconds: 100, ttlRemainingSeconds: 20 },
    { route: 'files', available: true, refreshOverdue: false, ageSeconds: 5, ttlRemainingSeconds: undefined },
  ];
  const make = () => new SidecarMetrics(() => states, () => 3600, { routes: ['llm', 'files'], version: '9.9.9' });

  it('pre-creates every known label set at 0, labels the status `code`, and passes promtool', async () => {
    const m = make();
    m.requestFinished('llm', 'GET', 200, 0.01);
    const text = await m.registry.metrics();
    expect(sample(text, 'leash_requests_total{route="llm",method="GET",code="200"}')).toBe(1);
    expect(text).not.toMatch(/leash_requests_total\{[^}]*status=/);
    for (const route of ['llm', 'files']) {
      for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'OTHER'])
        for (const code of [502, 503, 504]) expect(sample(text, `leash_requests_total{route="${route}",method="${method}",code="${code}"}`)).toBe(0);
      for (const result of ['success', 'failure', 'rejected']) expect(sample(text, `leash_credential_rotations_total{route="${route}",result="${result}"}`)).toBe(0);
      for (const status of [401, 403]) expect(sample(text, `leash_upstream_auth_failures_total{route="${route}",status="${status}"}`)).toBe(0);
      for (const reason of ['stale', 'coalesced', 'window', 'refused-value'])
        expect(sample(text, `leash_upstream_auth_refresh_skipped_total{route="${route}",reason="${reason}"}`)).toBe(0);
      expect(sample(text, `leash_credential_expired_total{route="${route}"}`)).toBe(0);
      expect(sample(text, `leash_request_duration_seconds_count{route="${route}"}`)).toBe(route === 'llm' ? 1 : 0);
    }
    for (const route of ['llm', 'files', '_none'])
      for (const reason of Object.keys(HTTP_ERROR_TYPES)) expect(sample(text, `leash_requests_denied_total{route="${route}",reason="${reason}"}`)).toBe(0);
    for (const scope of ['lease', 'instance', 'credential', 'all']) expect(sample(text, `leash_revocations_applied_total{scope="${scope}"}`)).toBe(0);
    expect(sample(text, 'leash_revocation_lag_seconds_count')).toBe(0);
    expect(sample(text, 'leash_credential_refresh_overdue{route="llm"}')).toBe(1);
    expect(sample(text, 'leash_credential_refresh_overdue{route="files"}')).toBe(0);
    expect(sample(text, 'leash_identity_ttl_remaining_seconds')).toBe(3600);
    expect(sample(text, 'leash_build_info{version="9.9.9"}')).toBe(1);
    expect(text).toMatch(/^process_resident_memory_bytes /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(text).not.toMatch(/^leash_(process|nodejs)_/m);
    expect(text).not.toMatch(/^nodejs_active_(handles|requests|resources)_total /m);
    if (HAVE_PROMTOOL) expect(promtoolCheckMetrics(text)).toBe('');
  });

  it('the first failure is an increase from a sample at 0', async () => {
    const m = make();
    const before = await m.registry.metrics();
    m.credentialRotation('llm', 'failure');
    const after = await m.registry.metrics();
    expect(sample(before, 'leash_credential_rotations_total{route="llm",result="failure"}')).toBe(0);
    expect(sample(after, 'leash_credential_rotations_total{route="llm",result="failure"}')).toBe(1);
  });
});

describe('packageVersion', () => {
  it('reads the version from package.json', async () => {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(packageVersion()).toBe(pkg.version);
  });
});

describe('no labelled counter is born at 1', () => {
  it('every leash_ counter of the sidecar (anomalies included) and of the authority has a series before its first event', async () => {
    // A counter added without its `inc(labels, 0)` appears at its first event, at 1: increase() and rate() never see that one.
    const sidecar = new SidecarMetrics(() => [], () => undefined, { routes: ['llm'], version: 't' });
    new AnomalyMetrics(sidecar.registry, ['llm'], NO_ROUTE);
    const authority = new AuthorityMetrics(async () => [], { credentials: ['search'], version: 't' });
    const unborn: string[] = [];
    for (const text of [await sidecar.registry.metrics(), await authority.registry.metrics()]) {
      for (const [, name] of text.matchAll(/^# TYPE (leash_\S+) counter$/gm)) {
        if (!text.split('\n').some((l) => l.startsWith(`${name!}{`) || l.startsWith(`${name!} `))) unborn.push(name!);
      }
    }
    expect(unborn).toEqual([]);
    // The check itself: a counter with labels and no inc(…, 0) is caught.
    const probe = new Registry();
    new Counter({ name: 'leash_probe_total', help: 'probe', labelNames: ['route'], registers: [probe] });
    expect(await probe.metrics()).not.toMatch(/^leash_probe_total/m);
  });
});
