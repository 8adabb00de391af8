import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { createVerifier, type Verifier } from '../../src/verify/index.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { codeOf, ISS, jwksUrl, ShiftClock, startKeyedAuthority, WarnLog, within, type KeyedAuthority } from '../helpers/verify-util.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Version skew on the revocation bus (docs/revocation.md, "Across versions"): what a newer
 * authority writes to the stream, met by this version's sidecar and verifier. A revocation
 * this version cannot read (a scope it does not know) is applied as `all` at its `at`: fail
 * closed, never skipped. Unknown extra fields on a known scope are ignored (a newer leash
 * only adds fields that narrow). Garbage (no readable scope or time) stays a counted skip.
 * Real Redis, real authority, real sidecar and verifier.
 */
let redis: TestRedis;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

/** What a newer authority would write: XADD the fields as given, then PUBLISH them with the id (as RedisRevocationPublisher does). */
async function writeAsNewer(prefix: string, fields: Record<string, string>): Promise<string> {
  const key = `${prefix}revocations`;
  const id = (await client.xadd(key, '*', ...Object.entries(fields).flat())) as string;
  await client.publish(key, JSON.stringify({ id, ...fields }));
  return id;
}

describe('a sidecar meets revocations written by a newer leash', () => {
  let authority: TestAuthority;
  let upstream: Upstream;
  let sidecar: RunningSidecar;
  const prefix = 'sc:';

  beforeAll(async () => {
    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' }, other: { kind: 'jwt', audience: 'other-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search', 'other'] }],
    });
    upstream = await startUpstream((_req, res) => res.end('ok'));
  });
  afterAll(async () => {
    await upstream?.close();
    await authority?.stop();
  });
  afterEach(async () => {
    await sidecar?.stop();
  });

  async function start(): Promise<void> {
    const token = await authority.token('agent-1');
    const route = (credential: string) => ({ upstream: upstream.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] });
    sidecar = await startSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        revocations: { redis: redis.url, prefix },
        routes: { search: route('search'), other: route('other') },
      },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
  }

  const leases = async () => {
    const s = (await (await fetch(`${sidecar.adminUrl}/status`)).json()) as { routes: Record<string, { lease: string | null }> };
    return { search: s.routes.search!.lease, other: s.routes.other!.lease };
  };
  const metrics = async () => (await fetch(`${sidecar.adminUrl}/metrics`)).text();
  const renewed = async (before: string | null, route: 'search' | 'other') =>
    waitFor(async () => {
      const l = (await leases())[route];
      return l !== null && l !== before;
    }, { timeoutMs: 2_000, intervalMs: 10, message: `${route} re-leased` });

  it('an unknown scope drops and re-leases every lease (as `all`), logs an error, counts scope="unknown"; serving goes on', async () => {
    await start();
    const before = await leases();
    const at = new Date().toISOString();
    const id = await writeAsNewer(prefix, { scope: 'route', target: 'search', reason: 'leaked via one route', at, by: 'admin', route: 'search' });
    await renewed(before.search, 'search');
    await renewed(before.other, 'other');
    expect(await metrics()).toMatch(/^leash_revocations_applied_total\{scope="unknown"\} 1$/m);
    expect(await metrics()).toMatch(/^leash_revocations_applied_total\{scope="all"\} 0$/m);
    const line = sidecar.logs.lines.find((l) => l.includes('revocation not understood'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ level: 'error', revocation: id, scope: 'route', target: 'search' });
    for (const r of ['search', 'other']) expect((await fetch(`${sidecar.url}/${r}/x`)).status).toBe(200);
  });

  it('extra fields on a known scope are ignored: a credential revocation still re-leases that credential only', async () => {
    await start();
    const before = await leases();
    await writeAsNewer(prefix, { scope: 'credential', target: 'other', reason: 'r', at: new Date().toISOString(), by: 'admin', narrow_to_route: 'nope', v: '2' });
    await renewed(before.other, 'other');
    expect((await leases()).search).toBe(before.search);
    expect(await metrics()).toMatch(/^leash_revocations_applied_total\{scope="credential"\} 1$/m);
    expect(sidecar.logs.lines.some((l) => l.includes('not understood'))).toBe(false);
  });

  it('a known scope with `crit` (a field it must understand: here a pattern as target) is not understood either: everything re-leased', async () => {
    await start();
    const before = await leases();
    await writeAsNewer(prefix, { scope: 'credential', target: 'sea*', reason: 'r', at: new Date().toISOString(), by: 'admin', match: 'glob', crit: 'match' });
    await renewed(before.search, 'search');
    await renewed(before.other, 'other');
    expect(await metrics()).toMatch(/^leash_revocations_applied_total\{scope="unknown"\} 1$/m);
  });

  it('garbage (no readable scope, no time) is skipped and counted; nothing is re-leased for it', async () => {
    await start();
    const before = await leases();
    await writeAsNewer(prefix, { scope: 'Not A Scope', target: 'x', at: new Date().toISOString() });
    await writeAsNewer(prefix, { scope: 'lease', target: before.search! });
    await client.publish(`${prefix}revocations`, 'not json');
    // A known revocation after them: once it is applied, the garbage has been read too.
    await new RedisRevocationPublisher(client, 3_600_000, { prefix }).publish({ scope: 'credential', target: 'other', reason: '', by: 't' });
    await renewed(before.other, 'other');
    expect((await leases()).search).toBe(before.search);
    const m = /^leash_revocations_malformed_total (\d+)$/m.exec(await metrics());
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(3);
    expect(await metrics()).toMatch(/^leash_revocations_applied_total\{scope="unknown"\} 0$/m);
  });
});

describe('a verifier meets revocations written by a newer leash', () => {
  let authority: KeyedAuthority;
  const clock = new ShiftClock();
  const verifiers: Verifier[] = [];
  let n = 0;

  beforeAll(async () => {
    authority = await startKeyedAuthority({ clock });
  });
  afterAll(async () => {
    await authority?.stop();
  });
  afterEach(async () => {
    await Promise.all(verifiers.splice(0).map((v) => v.close()));
  });

  async function verifier(prefix: string, warn: WarnLog): Promise<Verifier> {
    const v = createVerifier({ jwksUrl: jwksUrl(authority), ca: authority.caPem, issuer: ISS, audience: ['search-api', 'other-api'], clock, revocations: { redis: redis.url, prefix }, logger: warn });
    verifiers.push(v);
    await v.ready();
    return v;
  }

  it('an unknown scope refuses every token issued before its `at` (live and read at start), says why; later tokens pass', async () => {
    const prefix = `v${++n}:`;
    const early = await authority.lease('agent-1');
    const warn = new WarnLog();
    const live = await verifier(prefix, warn);
    expect((await live.verify(early.token)).jti).toBe(early.lease);
    const other = await authority.lease('agent-2', 'other');
    const at = new Date(clock.wallMs() + 1).toISOString();
    await writeAsNewer(prefix, { scope: 'trust_domain', target: 'spiffe://leash.local', reason: 'r', at, by: 'admin' });
    await within(async () => (await codeOf(live.verify(early.token))) === 'LEASH_VERIFY_REVOKED');
    expect(await codeOf(live.verify(other.token))).toBe('LEASH_VERIFY_REVOKED');
    const err = (await live.verify(early.token).catch((e: unknown) => e)) as { message: string; context: Record<string, unknown> };
    expect(err.context.scope).toBe('unknown');
    expect(err.message).toMatch(/does not understand/);
    expect(warn.entries.find((e) => /not understood/.test(e.msg))?.obj).toMatchObject({ scope: 'trust_domain' });

    // A verifier started afterwards reads it from the stream and refuses the same tokens.
    const late = await verifier(prefix, new WarnLog());
    expect(await codeOf(late.verify(early.token))).toBe('LEASH_VERIFY_REVOKED');

    clock.offsetMs += 2_000; // issued after the revocation's second
    const fresh = await authority.lease('agent-1');
    for (const v of [live, late]) expect((await v.verify(fresh.token)).jti).toBe(fresh.lease);
  });

  it('extra fields on a known scope are ignored; garbage is skipped and refuses nothing', async () => {
    const prefix = `v${++n}:`;
    const warn = new WarnLog();
    const v = await verifier(prefix, warn);
    const a = await authority.lease('agent-1');
    const b = await authority.lease('agent-1');
    await writeAsNewer(prefix, { scope: 'Whatever', target: '*', at: new Date(clock.wallMs()).toISOString() });
    await writeAsNewer(prefix, { scope: 'lease', target: a.lease, reason: 'r', at: new Date(clock.wallMs()).toISOString(), by: 'admin', also_jkt: 'x' });
    await within(async () => (await codeOf(v.verify(a.token))) === 'LEASH_VERIFY_REVOKED');
    expect((await v.verify(b.token)).jti).toBe(b.lease);
    expect(warn.has(/malformed revocation skipped/)).toBe(true);
    expect(warn.has(/not understood/)).toBe(false);
  });
});
