import { decodeJwt } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { JWT_CREDENTIAL, STATIC_CREDENTIAL, startFleet, type Fleet, type FleetSidecar } from '../helpers/fleet-procs.js';
import { dumpRedis, findLeaks, recordedFetch, recordedHttpsGet, secretForms, type HttpAnswer, type Seen } from '../helpers/fleet-scan.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A fleet as an operator runs it, every part its own process on 127.0.0.1: redis-server,
 * `leash authority`, the verify example service, an upstream, two `leash sidecar`s. Both
 * sidecars serve a static credential and a JWT; then `leash revoke` by lease, by instance
 * and by credential, each applied within a second where it should be and nowhere else;
 * then SIGTERM, every process exits 0. Last, everything the test saw — every log line,
 * every HTTP answer, every Redis key and stream entry — is searched: the static secret
 * appears nowhere (only the upstream may see it) and no JWT appears in any log line.
 */

// Fake, recognisable, and not shaped like any real provider's key.
const STATIC_SECRET = 'test-sk-fleet-0123456789abcdefFLEETxSECRETx42';
const APPLY_WITHIN_MS = 1_000;

let fleet: Fleet | undefined;
afterAll(async () => {
  await fleet?.destroy();
});

interface RouteStatus {
  lease: string | null;
  fingerprint: string | null;
  available: boolean;
}
interface SidecarStatus {
  instance: { id: string; identity: string | null };
  routes: { llm: RouteStatus; inventory: RouteStatus };
}
interface VerifyAnswer {
  ok?: boolean;
  caller?: string;
  lease?: string;
  credential?: string;
  error?: string;
}

/** Poll `fn` every 20 ms until `ok`, failing with the last value after `ms`. */
async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> {
  let v!: T;
  await waitFor(async () => ok((v = await fn())), { timeoutMs: ms, intervalMs: 20, message: () => `${what} (last: ${JSON.stringify(v)})` });
  return v;
}

describe('a fleet of separate processes', () => {
  it('serves, applies lease / instance / credential revocations, shuts down cleanly, and leaks no secret', { timeout: 40_000 }, async () => {
    fleet = await startFleet({ staticSecret: STATIC_SECRET, sidecars: 2 });
    const f = fleet;
    const [s1, s2] = f.sidecars as [FleetSidecar, FleetSidecar];
    const seen: Seen[] = [];
    const json = <T>(a: HttpAnswer) => JSON.parse(a.body) as T;
    const status = async (s: FleetSidecar) => json<SidecarStatus>(await recordedFetch(seen, `${s.name} GET /status`, `${s.adminUrl}/status`));
    const llm = (s: FleetSidecar) => recordedFetch(seen, `${s.name} GET /llm/v1/chat`, `${s.url}/llm/v1/chat`, { headers: { authorization: 'Bearer agent-dummy-key' } });
    const inventory = (s: FleetSidecar) => recordedFetch(seen, `${s.name} GET /inventory/items`, `${s.url}/inventory/items`);
    /** Straight to the verify service, not through leash, with a token the test picked up at the upstream. */
    const verifyDirect = (what: string, token: string) =>
      recordedFetch(seen, `verify-service GET /items (${what})`, `${f.verifyUrl}/items`, { headers: { authorization: `Bearer ${token}` } });
    const jwtsFrom = (identity: string) =>
      f.received
        .filter((r) => r.route === 'inventory')
        .map((r) => String(r.authorization).replace(/^Bearer /, ''))
        .filter((t) => decodeJwt(t).sub === identity);
    const lastJwt = (identity: string) => jwtsFrom(identity).at(-1)!;

    // ── 1. Both sidecars serve through both routes; the verify service accepts their JWTs.
    const before = await Promise.all([status(s1), status(s2)]);
    const identities = before.map((b) => b.instance.identity);
    expect(identities).toEqual(['spiffe://leash.local/join/fleet-agent-1', 'spiffe://leash.local/join/fleet-agent-2']);
    for (const [i, s] of [s1, s2].entries()) {
      const a = await llm(s);
      expect(a.status, a.body).toBe(200);
      expect(json<{ ok: boolean }>(a).ok).toBe(true);
      const b = await inventory(s);
      expect(b.status, b.body).toBe(200);
      expect(json<VerifyAnswer>(b)).toMatchObject({ ok: true, caller: identities[i], credential: JWT_CREDENTIAL, lease: before[i]!.routes.inventory.lease });
    }
    // The upstream got the real static secret (never the agent's dummy key) and one JWT per sidecar.
    const llmAuth = f.received.filter((r) => r.route === 'llm').map((r) => r.authorization);
    expect(llmAuth).toEqual([`Bearer ${STATIC_SECRET}`, `Bearer ${STATIC_SECRET}`]);
    for (const [i, id] of identities.entries()) {
      const claims = decodeJwt(lastJwt(id!));
      expect(claims).toMatchObject({ sub: id, jti: before[i]!.routes.inventory.lease, aud: 'inventory-api', iss: 'https://127.0.0.1' });
    }

    // ── 2. Revoke sidecar-1's JWT lease: it leases anew at once, the old token is refused.
    const lease1 = before[0]!.routes.inventory.lease!;
    const oldToken1 = lastJwt(identities[0]!);
    const revokedLease = await f.cli(['revoke', '--lease', lease1, '--reason', 'fleet e2e: token in a log']);
    expect(revokedLease.stdout.trim()).toMatch(new RegExp(`^revoked lease ${lease1} \\(\\d+-\\d+\\)$`));
    const t1 = Date.now();
    const fresh = await until(
      'sidecar-1 serves with a new JWT lease',
      async () => {
        const a = await inventory(s1);
        return { status: a.status, body: a.status === 200 ? json<VerifyAnswer>(a) : a.body };
      },
      (v) => v.status === 200 && typeof v.body === 'object' && v.body.lease !== lease1,
      APPLY_WITHIN_MS,
    );
    const newLease1 = (fresh.body as VerifyAnswer).lease!;
    expect(Date.now() - t1).toBeLessThan(APPLY_WITHIN_MS);
    expect(decodeJwt(lastJwt(identities[0]!)).jti).toBe(newLease1);
    expect((await status(s1)).routes.inventory.lease).toBe(newLease1);
    const refusedOld = await until(
      'the verify service refuses the revoked token',
      () => verifyDirect('revoked lease', oldToken1),
      (a) => a.status === 401,
      Math.max(0, APPLY_WITHIN_MS - (Date.now() - t1)),
    );
    expect(json<VerifyAnswer>(refusedOld).error).toBe('LEASH_VERIFY_REVOKED');
    // Nothing sent after the revocation carried the revoked token.
    const afterRevoke = f.received.filter((r) => r.atMs > t1 && r.route === 'inventory').map((r) => r.authorization);
    expect(afterRevoke).not.toContain(`Bearer ${oldToken1}`);
    // sidecar-2 was not touched.
    expect((await status(s2)).routes.inventory.lease).toBe(before[1]!.routes.inventory.lease);
    expect((await inventory(s2)).status).toBe(200);

    // ── 3. Revoke sidecar-2's identity: it is cut off; sidecar-1 carries on.
    const token2 = lastJwt(identities[1]!);
    const revokedInstance = await f.cli(['revoke', '--instance', identities[1]!, '--reason', 'fleet e2e: pod compromised']);
    expect(revokedInstance.stdout.trim()).toMatch(/^revoked instance spiffe:\/\/leash\.local\/join\/fleet-agent-2 \(\d+-\d+\)$/);
    const t2 = Date.now();
    const cutOff = await until(
      'both routes of sidecar-2 answer 503 leash_credential_unavailable',
      async () => Promise.all([llm(s2), inventory(s2)]),
      (answers) => answers.every((a) => a.status === 503 && a.headers['x-leash-error'] === 'leash_credential_unavailable'),
      APPLY_WITHIN_MS,
    );
    expect(Date.now() - t2).toBeLessThan(APPLY_WITHIN_MS);
    for (const a of cutOff) expect(json<{ error: { type: string } }>(a).error.type).toBe('leash_credential_unavailable');
    const ready2 = await recordedFetch(seen, `${s2.name} GET /readyz (cut off)`, `${s2.adminUrl}/readyz`);
    expect(ready2.status).toBe(503);
    const status2 = await status(s2);
    expect(status2.routes.llm).toMatchObject({ lease: null, available: false });
    expect(status2.routes.inventory).toMatchObject({ lease: null, available: false });
    expect(json<VerifyAnswer>(await verifyDirect('revoked instance', token2)).error).toBe('LEASH_VERIFY_REVOKED');
    const s1Llm = await llm(s1);
    expect(s1Llm.status).toBe(200);
    const s1Inv = await inventory(s1);
    expect(s1Inv.status).toBe(200);
    expect(json<VerifyAnswer>(s1Inv).lease).toBe(newLease1);

    // ── 4. Revoke the static credential: sidecar-1 re-leases it and keeps serving.
    const staticLease1 = (await status(s1)).routes.llm.lease!;
    expect(staticLease1).toBeTruthy();
    const revokedCredential = await f.cli(['revoke', '--credential', STATIC_CREDENTIAL, '--reason', 'fleet e2e: upstream key rotated']);
    expect(revokedCredential.stdout.trim()).toMatch(new RegExp(`^revoked credential ${STATIC_CREDENTIAL} \\(\\d+-\\d+\\)$`));
    const t3 = Date.now();
    const releasedStatus = await until(
      'sidecar-1 holds a new lease of the static credential',
      () => status(s1),
      (s) => s.routes.llm.lease !== null && s.routes.llm.lease !== staticLease1 && s.routes.llm.available,
      APPLY_WITHIN_MS,
    );
    expect(Date.now() - t3).toBeLessThan(APPLY_WITHIN_MS);
    expect(releasedStatus.routes.inventory.lease).toBe(newLease1); // the JWT route is not this credential
    const beforeCount = f.received.length;
    const afterCred = await llm(s1);
    expect(afterCred.status, afterCred.body).toBe(200);
    expect(f.received.slice(beforeCount).map((r) => r.authorization)).toEqual([`Bearer ${STATIC_SECRET}`]);
    expect((await inventory(s1)).status).toBe(200);
    // sidecar-2 got the credential revocation too, and stays cut off: it does not try to
    // lease again (it has no identity to lease with), it only answers 503.
    await s2.proc.waitForJson((l) => l.msg === 'revocation applied' && l.scope === 'credential', APPLY_WITHIN_MS);
    await sleep(100);
    expect((await llm(s2)).status).toBe(503);
    const leaseAttemptsAfterCutOff = () => {
      const lines = s2.proc.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
      const cut = lines.findIndex((l) => l.event === 'instance.revoked');
      return lines.slice(cut).filter((l) => ['credential.refresh_failed', 'credential.acquired', 'credential.rotated'].includes(String(l.event)));
    };
    expect(leaseAttemptsAfterCutOff()).toEqual([]);

    // `leash leases` now shows only sidecar-1's leases, by fingerprint.
    const listed = await f.cli(['leases', '--json']);
    const leases = JSON.parse(listed.stdout) as Array<{ id: string; instance: string; credential: string }>;
    expect(new Set(leases.map((l) => l.instance))).toEqual(new Set([identities[0]]));
    expect(leases.map((l) => l.id)).toEqual(expect.arrayContaining([newLease1, releasedStatus.routes.llm.lease]));

    // ── 5. Every operator-facing endpoint, then Redis, recorded for the scan.
    for (const s of [s1, s2]) for (const path of ['/healthz', '/readyz', '/status', '/metrics']) await recordedFetch(seen, `${s.name} GET ${path}`, `${s.adminUrl}${path}`);
    const authorityMetrics = await recordedHttpsGet(seen, 'authority GET /metrics', `${f.authorityUrl}/metrics`, f.caPem);
    expect(authorityMetrics.status).toBe(200);
    expect(authorityMetrics.body).toMatch(/leash_authority_revocations_total\{scope="lease"\} 1/);
    await recordedHttpsGet(seen, 'authority GET /healthz', `${f.authorityUrl}/healthz`, f.caPem);
    await recordedHttpsGet(seen, 'authority GET /.well-known/jwks.json', `${f.authorityUrl}/.well-known/jwks.json`, f.caPem);
    expect((await recordedFetch(seen, 'verify-service GET /healthz', `${f.verifyUrl}/healthz`)).status).toBe(200);
    const metrics1 = seen.find((x) => x.what === 'http sidecar-1 GET /metrics')!.text;
    expect(metrics1).toMatch(/^leash_revocation_channel_up 1$/m);
    const redisLive = await dumpRedis(f.redis.url, 'live');

    // ── 6. SIGTERM everything: sidecars (they release their leases), the verify service, the authority. All exit 0.
    for (const s of [s1, s2]) s.proc.child.kill('SIGTERM');
    expect(await Promise.all([s1.proc.exit, s2.proc.exit])).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    f.verify.child.kill('SIGTERM');
    expect(await f.verify.exit).toEqual({ code: 0, signal: null });
    const redisAfterSidecars = await dumpRedis(f.redis.url, 'after-sidecars');
    f.authority.child.kill('SIGTERM');
    expect(await f.authority.exit).toEqual({ code: 0, signal: null });
    const redisFinal = await dumpRedis(f.redis.url, 'final');
    // sidecar-1 released its leases on the way out; sidecar-2 held none.
    expect(redisFinal.some((x) => x.what.includes(' string leash:lease:'))).toBe(false);
    expect(redisFinal.some((x) => x.what.endsWith(' stream leash:revocations'))).toBe(true);
    expect(redisFinal.some((x) => x.what.endsWith(' stream leash:audit'))).toBe(true);

    // ── 7. The scan.
    const logLines: Seen[] = [];
    for (const p of f.procs()) {
      for (const l of p.stdout) logLines.push({ what: `log ${p.name} stdout`, text: l });
      for (const l of p.stderr) logLines.push({ what: `log ${p.name} stderr`, text: l });
    }
    for (const r of f.cliRuns) {
      for (const l of r.stdout.split('\n')) logLines.push({ what: `log leash ${r.args.join(' ')} stdout`, text: l });
      for (const l of r.stderr.split('\n')) logLines.push({ what: `log leash ${r.args.join(' ')} stderr`, text: l });
    }
    const redisSeen = [...redisLive, ...redisAfterSidecars, ...redisFinal];
    const everything = [...logLines, ...seen, ...redisSeen];
    // The scan is not vacuous: it holds every process's logs, the audit stream, the revocations, the fingerprints.
    for (const p of f.procs()) expect(logLines.some((l) => l.what.startsWith(`log ${p.name} `)), p.name).toBe(true);
    const staticFingerprint = before[0]!.routes.llm.fingerprint!;
    expect(staticFingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(redisSeen.some((x) => x.what.endsWith(' leash:audit') && x.text.includes(staticFingerprint))).toBe(true);
    // Sidecars copy their lifecycle events to the same stream (per-request events stay in their logs).
    const auditText = redisFinal.filter((x) => x.what.endsWith(' leash:audit')).map((x) => x.text).join('\n');
    expect(auditText).toContain('credential.acquired');
    expect(auditText).toContain('credential.revoked');
    expect(auditText).not.toMatch(/\bevent\W+request\b(?!\.)/);
    expect(logLines.some((l) => l.text.includes(staticFingerprint))).toBe(true);
    expect(logLines.some((l) => l.text.includes(lease1))).toBe(true);

    // (a) The static secret, in any form, nowhere but at the upstream.
    expect(findLeaks(everything, secretForms('static secret', STATIC_SECRET))).toEqual([]);
    // (b) No JWT in any log line: not whole, not its signature, not anything JWT-shaped.
    const jwts = [...new Set(f.received.filter((r) => r.route === 'inventory').map((r) => String(r.authorization).replace(/^Bearer /, '')))];
    expect(jwts.length).toBeGreaterThanOrEqual(3);
    const jwtForbidden: Record<string, string> = {};
    for (const [i, t] of jwts.entries()) {
      jwtForbidden[`jwt #${i}`] = t;
      jwtForbidden[`jwt #${i} signature`] = t.split('.')[2]!;
    }
    expect(findLeaks(logLines, jwtForbidden)).toEqual([]);
    expect(logLines.filter((l) => /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\./.test(l.text)).map((l) => l.what)).toEqual([]);
    // …nor in Redis, which holds leases by fingerprint only.
    expect(findLeaks(redisSeen, jwtForbidden)).toEqual([]);
    // And the cut-off sidecar never tried to lease again, up to its exit.
    expect(leaseAttemptsAfterCutOff()).toEqual([]);
  });
});
