import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { forbidden, unauthenticated } from '../../src/authority/errors.js';
import { credentialUsableUntilMs } from '../../src/sidecar/credentials/rotation.js';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import {
  RecordingStore,
  runLoops,
  sleep,
  startRotationSidecar,
  startStrictJwtUpstream,
  waitFor,
  type RequestResult,
  type RotationSidecar,
} from '../helpers/rotation-sidecar.js';

/**
 * DESIGN §6 failure sorting when the authority cannot help: unreachable or answering 5xx →
 * keep what is held until its safety margin, then fail closed with
 * leash_credential_unavailable (never an expired token upstream), and recover alone once
 * the authority is back; a 401/403 to a lease request → drop the credential at once.
 */
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let leash: RotationSidecar | undefined;
let tmp: string | undefined;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  leash = upstream = authority = tmp = undefined;
});

/** Test-friendly retries (rotation.backoff): full jitter under 400 ms once a few have failed. */
const FAST_BACKOFF = { base: '50ms', cap: '400ms' };

function sidecarConfig(a: TestAuthority, up: Upstream, credential: string, rotation: Record<string, unknown> = {}) {
  return {
    authority: { url: a.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
    rotation: { backoff: FAST_BACKOFF, ...rotation },
    routes: {
      svc: { upstream: up.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
    },
  };
}

/** The instant after which the sidecar must not inject `c` (DESIGN §6 safety margin). */
function usableUntil(c: HeldCredential): number {
  return credentialUsableUntilMs(c);
}

function held(s: RotationSidecar): HeldCredential | undefined {
  return s.sidecar.routes.get('svc')!.provider.current();
}

const summary = (rs: RequestResult[]) => rs.map((r) => `${r.status}${r.leashError ? `:${r.leashError}` : ''}@${Math.round(r.startMono)}`);

describe('rotation when the authority is unavailable', () => {
  it('authority down longer than the TTL: 503 once the credential nears expiry, recovery by itself on the same port', { timeout: 20_000 }, async () => {
    const TTL_MS = 3_000;
    authority = await startAuthority({
      trustDomain: 'leash.local',
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '3s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    const port = Number(new URL(authority.url).port);
    const up = await startStrictJwtUpstream({ jwks: authority.running.keys.jwks(), audience: () => 'search-api' });
    upstream = up;
    const token = await authority.token('agent-outage');
    leash = await startRotationSidecar(sidecarConfig(authority, up, 'search'), { authorityCa: authority.caPem, joinToken: () => token });
    const url = `${leash.url}/svc/v1/q`;
    expect((await fetch(url)).status).toBe(200);
    // Let one rotation happen first so the outage starts with a rotated credential in hand.
    await waitFor(() => leash!.audit.of('credential.rotated').length >= 1, 'a first rotation', 3_000);

    let stop = false;
    const loops = runLoops([url], 3, () => stop);
    try {
      // Stop the listener, keeping the same object (and so the same port) for the restart.
      const down = performance.now();
      const server = authority.running.server.server;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // Whatever is held from here on is the last credential before the outage.
      await waitFor(() => leash!.audit.events.some((e) => e.event === 'credential.refresh_failed' && e.mono > down), 'a failed refresh', TTL_MS);
      const last = held(leash)!;
      expect(last).toBeDefined();
      const deadline = usableUntil(last);

      // Within TTL + margin the route fails closed with leash_credential_unavailable.
      const firstUnavailable = await waitFor(
        () => leash!.audit.of('credential.expired').length > 0 && performance.now() > deadline,
        'the held credential to pass its safety margin',
        TTL_MS + 1_000,
      );
      expect(firstUnavailable).toBe(true);
      expect(performance.now() - down).toBeLessThan(TTL_MS + 1_000);
      const ready = await fetch(`${leash.adminUrl}/readyz`);
      expect(ready.status).toBe(503);
      // Stay down well past the TTL: every retry in that time fails and nothing is served.
      await sleep(Math.max(0, down + TTL_MS + 1_500 - performance.now()));
      expect((await fetch(url)).status).toBe(503);

      const restarted = performance.now();
      await authority.running.server.listen('127.0.0.1', port);
      // The sidecar recovers by itself (backoff capped at 400 ms here): no restart, no nudge.
      await waitFor(async () => (await fetch(url)).status === 200, 'the route to serve again after the restart', 3_000, 25);
      const recoveredIn = performance.now() - restarted;
      expect(recoveredIn).toBeLessThan(2_000);
      await sleep(300);
      stop = true;
      const results = await loops;

      const outage = results.filter((r) => r.startMono > down);
      const unavailable = outage.filter((r) => r.status === 503);
      // Only 200 (before the margin, after recovery) or 503 leash_credential_unavailable (with Retry-After).
      expect(outage.filter((r) => r.status !== 200 && r.status !== 503)).toEqual([]);
      expect(unavailable.length).toBeGreaterThan(10);
      expect(unavailable.every((r) => r.leashError === 'leash_credential_unavailable' && r.retryAfter !== null)).toBe(true);
      // Fail closed no earlier than the margin, and no later than TTL + 1 s after the authority went away.
      expect(unavailable.filter((r) => r.endMono < deadline).map((r) => Math.round(r.endMono - deadline))).toEqual([]);
      expect(unavailable[0]!.endMono - down).toBeLessThan(TTL_MS + 1_000);
      // No 200 between the first 503 and the restart (the expired credential never comes back).
      const firstOut = Math.min(...unavailable.map((r) => r.startMono));
      expect(summary(outage.filter((r) => r.status === 200 && r.startMono > firstOut && r.endMono < restarted))).toEqual([]);
      // The upstream never saw an expired (or otherwise invalid) token.
      expect({ failed: up.stats.failed, expired: up.stats.expired, other: up.stats.otherFailures }).toEqual({ failed: 0, expired: 0, other: [] });
      // Audit: failed refreshes during the outage, then a new credential after it.
      expect(leash.audit.of('credential.refresh_failed').filter((e) => e.mono > down).length).toBeGreaterThanOrEqual(3);
      // The first lease after the restart replaces the one held when the authority went away.
      const after = leash.audit.of('credential.rotated').filter((e) => e.mono > down);
      expect(after.length).toBeGreaterThanOrEqual(1);
      expect(after[0]!.mono).toBeGreaterThan(restarted);
      expect(after[0]!.fields.previousFingerprint).toBe(last.fingerprint);
      expect((await fetch(`${leash.adminUrl}/readyz`)).status).toBe(200);
      console.log(`rotation-outage: down ${Math.round(restarted - down)}ms, 503 from +${Math.round(unavailable[0]!.endMono - down)}ms, recovered in ${Math.round(recoveredIn)}ms`);
    } finally {
      stop = true;
      await loops;
    }
  });

  it('an authority answering 5xx: the credential in hand serves until its safety margin, then 503; back when the issuer is', { timeout: 20_000 }, async () => {
    tmp = mkdtempSync(join(tmpdir(), 'leash-rot-'));
    const flag = join(tmp, 'issuer-down');
    const store = new RecordingStore();
    // An exec issuer that fails (exit 3) while the flag file exists: the authority answers 503.
    const script = `if [ -e "$0" ]; then echo "mint backend down" >&2; exit 3; fi; printf '{"value":"tok-%s","ttlSeconds":4}' "$LEASH_LEASE_ID"`;
    authority = await startAuthority(
      {
        trustDomain: 'leash.local',
        credentials: { minted: { kind: 'exec', command: ['/bin/sh', '-c', script, flag], ttl: '4s' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['minted'] }],
      },
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, store },
    );
    // Opaque tokens: valid iff issued by the authority and less than their TTL ago (real time).
    let expired = 0;
    let unknown = 0;
    const seen = new Set<string>();
    upstream = await startUpstream((req, res) => {
      const value = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const entry = [...store.issued.values()].find((e) => value === `tok-${e.record.id}`);
      if (!entry) unknown++;
      else if (performance.now() >= entry.mono + (entry.record.expiresAtMs - entry.record.issuedAtMs)) expired++;
      else {
        seen.add(value);
        return void res.end('ok');
      }
      res.writeHead(401).end();
    });
    const token = await authority.token('agent-5xx');
    leash = await startRotationSidecar(sidecarConfig(authority, upstream, 'minted'), { authorityCa: authority.caPem, joinToken: () => token });
    const url = `${leash.url}/svc/v1/q`;
    const first = held(leash)!;
    expect(first).toBeDefined();
    writeFileSync(flag, '');
    const deadline = usableUntil(first);

    let stop = false;
    const loops = runLoops([url], 2, () => stop);
    try {
      await waitFor(() => leash!.audit.of('credential.expired').length > 0, 'the credential to reach its margin', 5_000);
      await sleep(300);
      const brokenAt = performance.now();
      rmSync(flag);
      await waitFor(() => leash!.audit.of('credential.rotated').length > 0, 'a new lease once the issuer works', 3_000);
      await sleep(200);
      stop = true;
      const results = await loops;

      const failures = leash.audit.of('credential.refresh_failed');
      // The scheduled refresh failed (5xx, retryable) and was retried while the credential was still good.
      expect(failures.length).toBeGreaterThanOrEqual(2);
      expect(failures[0]!.mono).toBeLessThan(deadline);
      expect(String(failures[0]!.fields.error)).toMatch(/authority answered 503/);
      expect(leash.audit.of('credential.revoked')).toEqual([]);
      // It kept serving with the credential in hand after the refresh failed ...
      const servedAfterFailure = results.filter((r) => r.status === 200 && r.startMono > failures[0]!.mono && r.endMono < deadline);
      expect(servedAfterFailure.length).toBeGreaterThan(5);
      // ... and failed closed exactly at the margin: no 503 before it, the first within 300 ms after it.
      const unavailable = results.filter((r) => r.status === 503);
      expect(unavailable.filter((r) => r.endMono < deadline).map((r) => Math.round(r.endMono - deadline))).toEqual([]);
      expect(unavailable.length).toBeGreaterThan(0);
      expect(Math.min(...unavailable.map((r) => r.endMono)) - deadline).toBeLessThan(300);
      expect(unavailable.every((r) => r.leashError === 'leash_credential_unavailable')).toBe(true);
      expect(results.filter((r) => r.status !== 200 && r.status !== 503)).toEqual([]);
      // Back to 200 with a new credential after the issuer recovered.
      expect(results.some((r) => r.status === 200 && r.startMono > brokenAt)).toBe(true);
      expect({ expired, unknown }).toEqual({ expired: 0, unknown: 0 });
      expect(seen.size).toBe(2);
      const metrics = await authority.running.metrics.registry.metrics();
      expect(metrics).toMatch(/leash_authority_leases_issued_total\{credential="minted",result="failed"\} [1-9]/);
    } finally {
      stop = true;
      await loops;
    }
  });

  it.each([
    [403, () => forbidden('test: this identity may no longer lease it')],
    [401, () => unauthenticated('test: client certificate refused')],
  ])('a %i to a lease refresh drops the credential at once, before its margin', { timeout: 15_000 }, async (status, refusal) => {
    authority = await startAuthority({
      trustDomain: 'leash.local',
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '4s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    const up = await startStrictJwtUpstream({ jwks: authority.running.keys.jwks(), audience: () => 'search-api' });
    upstream = up;
    const token = await authority.token(`agent-${status}`);
    // Refresh early (¼ TTL, no jitter) so "at once" and "at the margin" are far apart.
    leash = await startRotationSidecar(sidecarConfig(authority, up, 'search', { at: 0.25, jitter: 0 }), {
      authorityCa: authority.caPem,
      joinToken: () => token,
    });
    const url = `${leash.url}/svc/v1/q`;
    const first = held(leash)!;
    const deadline = usableUntil(first);
    const core = authority.running.authority;
    const lease = core.lease.bind(core);
    core.lease = async () => {
      throw refusal();
    };

    let stop = false;
    const loops = runLoops([url], 2, () => stop);
    try {
      const revoked = await waitFor(() => leash!.audit.of('credential.revoked')[0], 'the refused refresh to drop the credential', 3_000);
      const dropAt = revoked.mono;
      // The very next request is refused: the drop took effect at once.
      const next = await fetch(url);
      expect(next.status).toBe(503);
      expect(next.headers.get('x-leash-error')).toBe('leash_credential_unavailable');
      expect(revoked.fields.lease).toBe(first.lease);
      expect(revoked.fields.fingerprint).toBe(first.fingerprint);
      // Dropped well before the credential's own margin.
      expect(deadline - dropAt).toBeGreaterThan(1_000);
      const failure = leash.audit.of('credential.refresh_failed')[0]!;
      expect(String(failure.fields.error)).toContain(`authority answered ${status}`);
      // Give the authority its lease call back: the route recovers without a restart.
      core.lease = lease;
      // Nothing is held after the drop, so the next lease is a fresh acquisition, not a rotation.
      const again = await waitFor(() => leash!.audit.of('credential.acquired').find((e) => e.mono > dropAt), 'a new lease after the refusal ends', 2_000);
      await sleep(100);
      stop = true;
      const results = await loops;
      // From the drop to the new lease nothing was sent with the dropped credential.
      const rotatedAt = again.mono;
      expect(leash.audit.of('credential.rotated').filter((e) => e.mono < rotatedAt)).toEqual([]);
      expect(summary(results.filter((r) => r.status === 200 && r.startMono > dropAt + 1 && r.endMono < rotatedAt))).toEqual([]);
      expect(results.filter((r) => r.status !== 200 && r.status !== 503)).toEqual([]);
      expect(results.filter((r) => r.status === 200 && r.startMono > rotatedAt).length).toBeGreaterThan(0);
      expect(up.stats.failed).toBe(0);
    } finally {
      stop = true;
      await loops;
    }
  });
});
