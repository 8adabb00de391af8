import { afterEach, describe, expect, it } from 'vitest';
import { revoke as cliRevoke } from '../../src/bin/admin.js';
import { epochKeyOf } from '../../src/core/protocol.js';
import { ADMIN_TOKEN, startAuthority, type TestAuthority } from '../helpers/authority.js';
import { plainClient, waitFor } from '../helpers/bus-harness.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { adminRevoke, joinInstance, readStream, type Instance } from '../helpers/revoke-authority.js';

/**
 * Issue 7, at the authority, against a real redis-server per test:
 * - the start warning when Redis keeps nothing (and none with AOF; "could not check" when
 *   CONFIG is disabled, as on managed Redis);
 * - revoking a lease id the authority does not know (expired, or lost with Redis' data)
 *   publishes the revocation anyway and says so (was 404);
 * - after Redis restarted empty, the replica writes back the revoked-instance marks and
 *   the revocations it remembers: the revoked instance's still-valid certificate cannot
 *   lease again, and the stream holds the revocation again (for verifiers that start now).
 */
const STREAM = 'leash:revocations';
const CONFIG = {
  credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
};
let redis: BusRedis | undefined;
let authority: TestAuthority | undefined;
const instances: Instance[] = [];

afterEach(async () => {
  for (const i of instances.splice(0)) i.close();
  await authority?.stop();
  await redis?.stop();
  authority = redis = undefined;
});

async function start(options: Parameters<typeof startBusRedis>[0] = {}): Promise<TestAuthority> {
  redis = await startBusRedis(options);
  authority = await startAuthority({ ...CONFIG, redis: redis.url });
  return authority;
}

const persistenceLine = (a: TestAuthority) => a.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.redisPersistence !== undefined);

describe('authority start: does Redis keep anything?', () => {
  it("warns when Redis has neither AOF nor RDB (--save '' --appendonly no)", async () => {
    const a = await start();
    await waitFor(() => persistenceLine(a) !== undefined, 3_000, 'persistence line');
    const line = persistenceLine(a)!;
    expect(line).toMatchObject({ level: 'warn', redisPersistence: 'none' });
    expect(String(line.msg)).toMatch(/keeps nothing across a restart/);
  });

  it('does not warn with appendonly yes', async () => {
    const a = await start({ persistent: true });
    await waitFor(() => persistenceLine(a) !== undefined, 3_000, 'persistence line');
    expect(persistenceLine(a)).toMatchObject({ level: 'info', redisPersistence: 'aof' });
    expect(a.logs.lines.some((l) => /keeps nothing|could not check/.test(l))).toBe(false);
  });

  it('says it could not check when CONFIG is disabled (managed Redis)', async () => {
    const a = await start({ args: ['--rename-command', 'CONFIG', ''] });
    await waitFor(() => persistenceLine(a) !== undefined, 3_000, 'persistence line');
    expect(persistenceLine(a)).toMatchObject({ level: 'warn', redisPersistence: 'unknown' });
    expect(String(persistenceLine(a)!.msg)).toMatch(/could not check/);
  });
});

describe('revoke a lease the authority does not know', () => {
  it('publishes it anyway and says so (API and CLI); a malformed id is still refused', async () => {
    const a = await start();
    const client = plainClient(redis!.url);
    const answer = await adminRevoke(a.url, a.caPem, { scope: 'lease', target: 'lost-with-redis', reason: 'seen in a log' }, 'alice');
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toMatchObject({ leases: 0, warning: 'unknown lease: revocation published anyway' });
    expect(answer.body.revocation).toMatchObject({ scope: 'lease', target: 'lost-with-redis', by: 'alice' });
    const entries = await readStream(client, STREAM);
    expect(entries.map((e) => e.fields.target)).toEqual(['lost-with-redis']);
    expect(a.logs.events('lease.revoked')).toEqual([expect.objectContaining({ lease: 'lost-with-redis', by: 'alice', error: 'unknown lease' })]);

    const line = await cliRevoke({ url: new URL(a.url), caPem: a.caPem, token: ADMIN_TOKEN }, { lease: 'also-unknown' });
    expect(line).toMatch(/^revoked lease also-unknown \(\d+-\d+\); unknown lease: revocation published anyway$/);
    expect((await readStream(client, STREAM)).length).toBe(2);

    const bad = await adminRevoke(a.url, a.caPem, { scope: 'lease', target: '../../x' });
    expect(bad.status).toBe(400);
    expect((await readStream(client, STREAM)).length).toBe(2);
    client.disconnect();
  });
});

describe('Redis restarted empty under a running authority', () => {
  it('the revoked instance cannot lease again, and the stream and epoch are written back', async () => {
    const a = await start();
    const client = plainClient(redis!.url);
    const victim = await joinInstance(a.url, a.caPem, await a.token('agent-1'));
    const other = await joinInstance(a.url, a.caPem, await a.token('agent-2'));
    instances.push(victim, other);
    expect((await victim.lease('search')).status).toBe(200);
    const revoked = await adminRevoke(a.url, a.caPem, { scope: 'instance', target: victim.identity, reason: 'compromised' });
    expect(revoked.status).toBe(200);
    expect((await victim.lease('search')).status).toBe(401);
    const epoch = await client.get(epochKeyOf(STREAM));

    await redis!.restart(); // empty: marks, identities, leases and stream are gone
    // Its certificate is still valid: only the written-back mark stops it.
    const after = await victim.lease('search');
    expect(after.status, JSON.stringify(after.body.error)).toBe(401);
    expect((await other.lease('search')).status).toBe(200);
    expect(epoch).not.toBeNull();
    const newEpoch = await client.get(epochKeyOf(STREAM));
    expect(newEpoch).not.toBeNull();
    expect(newEpoch).not.toBe(epoch);
    const entries = await readStream(client, STREAM);
    expect(entries.map((e) => ({ scope: e.fields.scope, target: e.fields.target, at: e.fields.at }))).toEqual([
      { scope: 'instance', target: victim.identity, at: revoked.body.revocation!.at },
    ]);
    expect(a.logs.lines.some((l) => /redis lost its data/.test(l))).toBe(true);

    // Revoking it again finds it (the mark is back): no "unknown instance" warning.
    const again = await adminRevoke(a.url, a.caPem, { scope: 'instance', target: victim.identity });
    expect(again.body.warning).toBeUndefined();
    client.disconnect();
  });

  it('an instance the authority forgot can still be revoked: marked, published, with a warning', async () => {
    const a = await start();
    const victim = await joinInstance(a.url, a.caPem, await a.token('agent-3'));
    instances.push(victim);
    expect((await victim.lease('search')).status).toBe(200);
    await redis!.restart(); // the identity registry and its leases are gone
    const answer = await adminRevoke(a.url, a.caPem, { scope: 'instance', target: victim.identity });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.warning).toBe('unknown instance: revoked and published anyway');
    expect((await victim.lease('search')).status).toBe(401);
  });
});
