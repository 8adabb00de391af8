import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import type { Upstream } from '../helpers/harness.js';
import {
  RecordingStore,
  runLoops,
  startRotationSidecar,
  startStrictJwtUpstream,
  steppableClock,
  type RotationSidecar,
  type UpstreamStats,
} from '../helpers/rotation-sidecar.js';

/**
 * DESIGN §6: the refresh is scheduled on the sidecar's monotonic clock from the moment it
 * received the lease, with no dependence on wall-clock agreement. Here the sidecar's wall
 * clock steps +1 h, then −2 h (to −1 h), then back; the authority's steps +1 h and back,
 * at other moments, so the two disagree by up to 2 h. Rotations must keep their ½ TTL ±10 %
 * cadence (measured on the monotonic clock, against each lease's own TTL) and no request
 * may fail.
 *
 * The upstream verifies strictly (jose, clockTolerance 0) in the frame of the authority's
 * clock at the token's issue, i.e. it checks real-time validity: a verifier sharing the
 * authority's stepped clock would reject tokens on any step whatever the sidecar did.
 * The identity certificate lives 3 h so the authority's +1 h step does not expire it.
 */
let authority: TestAuthority | undefined;
let upstream: (Upstream & { stats: UpstreamStats }) | undefined;
let leash: RotationSidecar | undefined;
const timers: NodeJS.Timeout[] = [];

afterEach(async () => {
  timers.splice(0).forEach(clearTimeout);
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
  leash = upstream = authority = undefined;
});

const HOUR = 3_600_000;

describe('stepped wall clocks', () => {
  it('±1 h steps of the sidecar and authority clocks leave the rotation cadence and every request intact', { timeout: 20_000 }, async () => {
    const authClock = steppableClock();
    const sideClock = steppableClock();
    const store = new RecordingStore(authClock);
    authority = await startAuthority(
      {
        trustDomain: 'leash.local',
        identity: { ttl: '3h' },
        credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '2s' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
      },
      { clock: authClock, store },
    );
    upstream = await startStrictJwtUpstream({
      jwks: authority.running.keys.jwks(),
      audience: () => 'search-api',
      currentDate: ({ jti }) => new Date(Date.now() + (jti !== undefined ? (store.issued.get(jti)?.offsetMs ?? NaN) : NaN)),
    });
    const token = await authority.token('agent-clock');
    leash = await startRotationSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        routes: {
          search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
        },
      },
      { authorityCa: authority.caPem, joinToken: () => token, clock: sideClock },
    );
    const url = `${leash.url}/search/v1/q`;
    expect((await fetch(url)).status).toBe(200);

    const start = performance.now();
    const steps: Array<{ at: number; what: string }> = [];
    const step = (afterMs: number, what: string, apply: () => void) =>
      timers.push(
        setTimeout(() => {
          apply();
          steps.push({ at: performance.now(), what });
        }, afterMs),
      );
    step(1_500, 'sidecar +1h', () => (sideClock.offsetMs = HOUR));
    step(3_000, 'authority +1h', () => (authClock.offsetMs = HOUR));
    step(4_500, 'sidecar −2h (to −1h)', () => (sideClock.offsetMs = -HOUR));
    step(6_000, 'authority −1h (back)', () => (authClock.offsetMs = 0));
    step(7_500, 'sidecar +1h (back)', () => (sideClock.offsetMs = 0));
    let statusMidway: { routes: { search: { ageSeconds: number; ttlRemainingSeconds: number; available: boolean } } } | undefined;
    timers.push(setTimeout(() => void fetch(`${leash!.adminUrl}/status`).then(async (r) => (statusMidway = (await r.json()) as typeof statusMidway)), 5_200));
    const results = await runLoops([url], 6, () => performance.now() - start > 9_000);
    expect(steps.map((s) => s.what)).toHaveLength(5);

    // No request failed, and the strict upstream accepted every token.
    expect(results.length).toBeGreaterThan(300);
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    expect({ failed: upstream.stats.failed, expired: upstream.stats.expired, notYetValid: upstream.stats.notYetValid, other: upstream.stats.otherFailures }).toEqual({
      failed: 0,
      expired: 0,
      notYetValid: 0,
      other: [],
    });
    expect(leash.audit.of('credential.refresh_failed')).toEqual([]);
    expect(leash.audit.of('credential.expired')).toEqual([]);

    // The authority's step took effect: leases were issued with its clock at +1 h and at 0.
    const offsets = new Set([...store.issued.values()].map((e) => e.offsetMs));
    expect(offsets).toEqual(new Set([0, HOUR]));
    for (const e of store.issued.values()) expect(Math.abs(e.record.issuedAtMs - (Date.now() - (performance.now() - e.mono)) - e.offsetMs)).toBeLessThan(1_000);

    // Cadence: from each lease's receipt to the next rotation is ½ TTL ± 10 % of that lease's
    // own TTL (tolerance: the authority round trip and timer lateness).
    const points = [...leash.audit.of('credential.acquired'), ...leash.audit.of('credential.rotated')].sort((a, b) => a.mono - b.mono);
    expect(points[0]!.event).toBe('credential.acquired');
    const off: string[] = [];
    const gaps: number[] = [];
    for (let i = 1; i < points.length; i++) {
      const lease = store.issued.get(String(points[i - 1]!.fields.lease));
      expect(lease).toBeDefined();
      const ttl = lease!.record.expiresAtMs - lease!.record.issuedAtMs;
      const gap = points[i]!.mono - points[i - 1]!.mono;
      gaps.push(Math.round(gap));
      if (gap < 0.4 * ttl - 100 || gap > 0.6 * ttl + 200) off.push(`rotation ${i}: ${Math.round(gap)}ms after a ${ttl}ms lease`);
    }
    expect(off).toEqual([]);
    // Rotations went on through every step: one within 1.5 s after each.
    for (const s of steps) expect(points.some((p) => p.mono > s.at && p.mono < s.at + 1_500), `a rotation after "${s.what}"`).toBe(true);
    expect(points.length).toBeGreaterThanOrEqual(8);

    // /status, taken with the sidecar's clock at −1 h, still reports sane ages and remaining TTLs.
    expect(statusMidway).toBeDefined();
    const st = statusMidway!.routes.search;
    expect(st.available).toBe(true);
    expect(st.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(st.ageSeconds).toBeLessThanOrEqual(2);
    expect(st.ttlRemainingSeconds).toBeGreaterThanOrEqual(0);
    expect(st.ttlRemainingSeconds).toBeLessThanOrEqual(2);
    console.log(`rotation-clock: ${results.length} requests, ${points.length - 1} rotations, gaps ${gaps.join(' ')} ms`);
  });
});
