import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { revocationWindowMs } from '../../src/authority/assemble.js';
import { authoritySchema } from '../../src/config/authority.js';
import { parseConfig } from '../../src/config/load.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { fleetSecrets, startReplica, type FleetSecrets, type Replica } from '../helpers/replicas.js';
import { adminRevoke, api, dumpRedis, joinInstance, readStream, tapChannel, type ChannelTap, type Instance } from '../helpers/revoke-authority.js';
import { sleep } from '../helpers/wait.js';

/**
 * Revocation at the authority (DESIGN §7): each scope through POST /v1/admin/revoke on two
 * replicas sharing a real Redis, instances on real mTLS connections kept alive.
 */
let redis: TestRedis;
let secrets: FleetSecrets;
let client: Redis;
let dir: string;
const replicas: Replica[] = [];
const instances: Instance[] = [];
let tap: ChannelTap | undefined;
/** Every credential value handed out, to make sure none is ever stored or published. */
const values: string[] = [];

const SLOW_SECRET = 'exec-minted-secret-value-0123456789';
const STREAM = 'leash:revocations';

beforeAll(async () => {
  redis = await startRedis();
  secrets = fleetSecrets();
  client = new Redis(redis.url);
  dir = mkdtempSync(join(tmpdir(), 'leash-revoke-'));
  // An exec issuer that takes 600 ms: a revocation can land while a lease is being issued.
  writeFileSync(join(dir, 'slow.mjs'), `setTimeout(() => process.stdout.write(JSON.stringify({ value: ${JSON.stringify(SLOW_SECRET)} + '-' + process.env.LEASH_LEASE_ID, ttlSeconds: 600 })), 600);`);
});
afterEach(async () => {
  for (const i of instances.splice(0)) i.close();
  tap?.close();
  tap = undefined;
  for (const r of replicas.splice(0)) await r.stop();
  await client.flushall();
});
afterAll(async () => {
  client?.disconnect();
  secrets?.dispose();
  rmSync(dir, { recursive: true, force: true });
  await redis?.stop();
});

const CONFIG = () => ({
  credentials: {
    search: { kind: 'jwt', audience: 'search-api', ttl: '5m' },
    other: { kind: 'jwt', audience: 'other-api', ttl: '10m' },
    slow: { kind: 'exec', command: [process.execPath, join(dir, 'slow.mjs')], ttl: '10m' },
  },
  policies: [{ identities: ['join:agent-*'], credentials: ['search', 'other', 'slow'], maxTtl: '1h' }],
});

async function fleet(n = 2): Promise<[Replica, Replica]> {
  for (let i = replicas.length; i < n; i++) replicas.push(await startReplica(`r${i}`, secrets, redis.url, CONFIG()));
  tap = await tapChannel(redis.url, STREAM);
  return [replicas[0]!, replicas[1] ?? replicas[0]!];
}

async function join_(r: Replica, name: string): Promise<Instance> {
  const token = (await r.running.authority.createJoinToken('test', name, 60_000)).token;
  const i = await joinInstance(r.url, secrets.ca.certPem, token);
  instances.push(i);
  return i;
}

async function lease(i: Instance, credential: string): Promise<string> {
  const a = await i.lease(credential);
  expect(a.status, JSON.stringify(a.body)).toBe(200);
  values.push(a.body.value!);
  return a.body.lease!;
}

const revoke = (r: Replica, body: unknown, actor?: string) => adminRevoke(r.url, secrets.ca.certPem, body, actor);
const leaseIds = async (r: Replica, filter: { instance?: string; credential?: string } = {}) => (await r.running.store.listLeases(filter)).map((l) => l.id).sort();
const metric = async (r: Replica, scope: string) => {
  const m = /leash_authority_revocations_total\{scope="(\w+)"\} (\d+)/g;
  const text = await r.running.metrics.registry.metrics();
  return Number([...text.matchAll(m)].find((x) => x[1] === scope)?.[2] ?? 0);
};

/** The stream entry, the pub/sub message and the API answer are the same revocation (DESIGN §7 fields). */
async function expectPublished(revocation: Record<string, unknown>, count: number) {
  const stream = await readStream(client, STREAM);
  const entry = stream.find((e) => e.id === revocation.id);
  expect(entry, `stream entry ${String(revocation.id)}`).toBeDefined();
  expect(Object.keys(entry!.fields).sort()).toEqual(['at', 'by', 'reason', 'scope', 'target']);
  expect({ id: entry!.id, ...entry!.fields }).toEqual(revocation);
  const messages = await tap!.count(count);
  expect(messages.find((m) => m.id === revocation.id)).toEqual(revocation);
}

describe('POST /v1/admin/revoke', () => {
  it('lease: deletes that lease only, publishes {id,scope,target,reason,at,by}, counts and audits it; again → published anyway, with a warning', async () => {
    const [a, b] = await fleet();
    const one = await join_(a, 'agent-1');
    const l1 = await lease(one, 'search');
    const l2 = await lease(one, 'other');
    const before = Date.now();
    const answer = await revoke(b, { scope: 'lease', target: l1, reason: 'leaked in a log' }, 'alice');
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const r = answer.body.revocation!;
    expect(r).toEqual({ id: expect.stringMatching(/^\d+-\d+$/), scope: 'lease', target: l1, reason: 'leaked in a log', at: expect.any(String), by: 'alice' });
    expect(Date.parse(r.at)).toBeGreaterThanOrEqual(before - 5);
    expect(answer.body.leases).toBe(1);
    await expectPublished(r, 1);
    expect(await leaseIds(a)).toEqual([l2]);
    expect(await metric(b, 'lease')).toBe(1);
    const audited = b.logs.events('lease.revoked');
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({ audit: true, lease: l1, credential: 'search', instance: one.identity, by: 'alice', reason: 'leaked in a log', fingerprint: expect.stringMatching(/^sha256:/) });
    // The audit stream carries it too.
    const audit = await readStream(client, 'leash:audit');
    expect(audit.find((e) => e.fields.event === 'lease.revoked')?.fields).toMatchObject({ lease: l1, by: 'alice' });

    // Unknown here (gone, or lost with Redis' data: the authority cannot tell): published
    // anyway, and the answer says so (issue 7). A malformed id cannot be a lease: 400.
    for (const target of [l1, 'no-such-lease']) {
      const again = await revoke(a, { scope: 'lease', target });
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({ leases: 0, warning: 'unknown lease: revocation published anyway', revocation: { scope: 'lease', target } });
    }
    for (const target of ['../../x', 'a'.repeat(200)]) {
      const bad = await revoke(a, { scope: 'lease', target });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toEqual({ code: 'LEASH_ERR_AUTHORITY_BAD_REQUEST', message: 'lease: not a lease id' });
    }
    // The instance is not affected: it keeps leasing, even the credential whose lease went.
    expect((await one.lease('search')).status).toBe(200);
    expect((await readStream(client, STREAM)).length).toBe(3);
  });

  it('instance: cut off on every replica, over its open connection too; its leases go; the other instance keeps leasing', async () => {
    const [a, b] = await fleet();
    const one = await join_(a, 'agent-1');
    const two = await join_(a, 'agent-2');
    const oneLeases = [await lease(one, 'search'), await lease(one, 'other')];
    const twoLease = await lease(two, 'search');
    // A second connection of agent-1 to the other replica, opened (and its identity cached) before the revocation.
    const oneOnB = await joinInstance(b.url, secrets.ca.certPem, (await b.running.authority.createJoinToken('test', 'agent-1', 60_000)).token);
    instances.push(oneOnB);
    values.push((await oneOnB.lease('search')).body.value!);

    const answer = await revoke(b, { scope: 'instance', target: 'join:agent-1', reason: 'compromised pod' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const r = answer.body.revocation!;
    expect(r).toMatchObject({ scope: 'instance', target: 'spiffe://leash.local/join/agent-1', reason: 'compromised pod', by: 'admin' });
    expect(answer.body.leases).toBe(3);
    await expectPublished(r, 1);
    expect(await leaseIds(a, { instance: one.identity })).toEqual([]);
    expect(oneLeases.every((id) => id.length > 0)).toBe(true);

    // Every call with that identity is refused with 401, on both replicas, on the kept-alive connections.
    for (const inst of [one, oneOnB]) {
      const l = await inst.lease('search');
      expect(l.status).toBe(401);
      expect(l.body.error).toEqual({ code: 'LEASH_ERR_UNAUTHENTICATED', message: 'identity revoked' });
      expect((await inst.renew()).status).toBe(401);
      expect((await inst.release(twoLease)).status).toBe(401);
      expect(inst.sockets.size).toBe(1); // the same connection all along: the cache did not let it through
    }
    // A fresh connection too.
    const fresh = await api(b.url, secrets.ca.certPem, 'POST', '/v1/leases', { body: { credential: 'search' }, identity: one.client });
    expect(fresh.status).toBe(401);
    expect(await leaseIds(a, { instance: one.identity })).toEqual([]);

    // The name cannot come back with a new join token while the mark lasts.
    const token = (await a.running.authority.createJoinToken('test', 'agent-1', 60_000)).token;
    const boot = await api(a.url, secrets.ca.certPem, 'POST', '/v1/bootstrap', { body: { joinToken: token, csr: (await import('../../src/pki/x509.js')).createCsr((await import('../../src/pki/x509.js')).createIdentityKey(), 'x') } });
    expect(boot.status).toBe(401);
    expect(boot.body).toEqual({ error: { code: 'LEASH_ERR_UNAUTHENTICATED', message: 'identity revoked' } });
    // The mark lasts the identity TTL (1 h here).
    const ttl = await client.pttl('leash:revoked:instance:spiffe://leash.local/join/agent-1');
    // One identity TTL, plus the margin for renewals in flight (authority.ts MARK_MARGIN_MS).
    expect(ttl).toBeGreaterThan(3_890_000);
    expect(ttl).toBeLessThanOrEqual(3_900_000);

    // The other instance is untouched and keeps leasing and renewing.
    expect(await leaseIds(a, { instance: two.identity })).toEqual([twoLease]);
    expect((await two.lease('other')).status).toBe(200);
    expect((await two.renew()).status).toBe(200);

    // Audited once, counted; revoking it again is accepted (idempotent) and re-published.
    expect(b.logs.events('instance.revoked')).toEqual([expect.objectContaining({ instance: one.identity, by: 'admin', reason: 'compromised pod' })]);
    expect(b.logs.events('lease.revoked')).toHaveLength(3);
    expect(await metric(b, 'instance')).toBe(1);
    const again = await revoke(a, { scope: 'instance', target: one.identity });
    expect(again.status).toBe(200);
    expect(again.body.leases).toBe(0);
  });

  it('instance: unknown → revoked anyway with a warning, malformed or foreign → 400', async () => {
    const [a] = await fleet(1);
    await join_(a, 'agent-1');
    for (const target of ['join:agent-9', 'spiffe://leash.local/join/agent-8', 'spiffe://leash.local/ns/x/sa/y']) {
      const r = await revoke(a, { scope: 'instance', target });
      expect(r.status, target).toBe(200);
      expect(r.body.warning, target).toBe('unknown instance: revoked and published anyway');
    }
    // The mark is there: the name cannot bootstrap while it lasts.
    const token = (await a.running.authority.createJoinToken('test', 'agent-9', 60_000)).token;
    await expect(joinInstance(a.url, secrets.ca.certPem, token)).rejects.toThrow(/bootstrap answered 401/);
    await client.del(STREAM);
    tap!.messages.length = 0;
    for (const target of ['agent-1', 'join:Agent_1!', 'spiffe://other.domain/join/agent-1', 'spiffe://leash.local', 'https://leash.local/join/agent-1', 'spiffe://leash.local/a/../b']) {
      const r = await revoke(a, { scope: 'instance', target });
      expect(r.status, target).toBe(400);
      expect(r.body.error?.code).toBe('LEASH_ERR_AUTHORITY_BAD_REQUEST');
    }
    expect(await readStream(client, STREAM)).toEqual([]);
    expect(tap!.messages).toEqual([]);
  });

  it('instance: a lease being issued while the instance is revoked is taken back (401, not stored)', async () => {
    const [a, b] = await fleet();
    const one = await join_(a, 'agent-1');
    const pending = one.lease('slow'); // the issuer takes 600 ms
    await sleep(200);
    expect((await revoke(b, { scope: 'instance', target: one.identity })).status).toBe(200);
    const answer = await pending;
    expect(answer.status).toBe(401);
    expect(answer.body.value).toBeUndefined();
    expect(await leaseIds(a, { instance: one.identity })).toEqual([]);
  });

  it('credential: every lease of it goes, on every instance; other credentials stay; sidecars can lease it again', async () => {
    const [a, b] = await fleet();
    const one = await join_(a, 'agent-1');
    const two = await join_(b, 'agent-2');
    await lease(one, 'search');
    await lease(two, 'search');
    const keep = [await lease(one, 'other'), await lease(two, 'other')].sort();
    const answer = await revoke(a, { scope: 'credential', target: 'search', reason: 'upstream key rotated' });
    expect(answer.status).toBe(200);
    expect(answer.body.revocation).toMatchObject({ scope: 'credential', target: 'search', reason: 'upstream key rotated', by: 'admin' });
    expect(answer.body.leases).toBe(2);
    await expectPublished(answer.body.revocation!, 1);
    expect(await leaseIds(b, { credential: 'search' })).toEqual([]);
    expect(await leaseIds(b)).toEqual(keep);
    expect(a.logs.events('credential.revoked')).toEqual([expect.objectContaining({ credential: 'search', by: 'admin', reason: 'upstream key rotated' })]);
    expect(await metric(a, 'credential')).toBe(1);
    // Not an identity revocation: both lease it again at once.
    expect((await one.lease('search')).status).toBe(200);
    expect((await two.lease('search')).status).toBe(200);

    const unknown = await revoke(a, { scope: 'credential', target: 'nope' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toEqual({ code: 'LEASH_ERR_NOT_FOUND', message: 'no such credential' });
  });

  it('all: target "*", every lease goes, instances keep their identities', async () => {
    const [a, b] = await fleet();
    const one = await join_(a, 'agent-1');
    const two = await join_(b, 'agent-2');
    await lease(one, 'search');
    await lease(two, 'other');
    const answer = await revoke(b, { scope: 'all', target: '*', reason: 'incident 42' }, 'oncall@example');
    expect(answer.status).toBe(200);
    expect(answer.body.revocation).toMatchObject({ scope: 'all', target: '*', reason: 'incident 42', by: 'oncall@example' });
    expect(answer.body.leases).toBe(2);
    await expectPublished(answer.body.revocation!, 1);
    expect(await leaseIds(a)).toEqual([]);
    expect(b.logs.events('credential.revoked')).toEqual([expect.objectContaining({ credential: '*', by: 'oncall@example' })]);
    expect(await metric(b, 'all')).toBe(1);
    expect((await one.lease('search')).status).toBe(200);
    expect((await two.renew()).status).toBe(200);
  });

  it('refuses bad requests (400), a missing or wrong admin token (401), and publishes nothing for them', async () => {
    const [a] = await fleet(1);
    for (const body of [
      {},
      { scope: 'everything', target: '*' },
      { scope: 'all', target: 'x' },
      { scope: 'all' },
      { scope: 'lease', target: '' },
      { scope: 'lease', target: 42 },
      { scope: 'credential', target: 'search', reason: 7 },
      { scope: 'credential', target: 'search', reason: 'line\nbreak' },
      { scope: 'credential', target: 'search', reason: 'x'.repeat(513) },
      [],
      null,
    ]) {
      const r = await revoke(a, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error?.code).toBe('LEASH_ERR_AUTHORITY_BAD_REQUEST');
    }
    const wrongToken = await adminRevoke(a.url, secrets.ca.certPem, { scope: 'all', target: '*' }, undefined, 'wrong');
    expect(wrongToken.status).toBe(401);
    expect(wrongToken.body.error).toEqual({ code: 'LEASH_ERR_UNAUTHENTICATED', message: 'admin token is wrong' });
    const noToken = await adminRevoke(a.url, secrets.ca.certPem, { scope: 'all', target: '*' }, undefined, '');
    expect(noToken.status).toBe(401);
    expect(noToken.body.error).toEqual({ code: 'LEASH_ERR_UNAUTHENTICATED', message: 'admin token required' });
    expect(await readStream(client, STREAM)).toEqual([]);
    // A reason is optional: absent is the empty string.
    const ok = await revoke(a, { scope: 'all', target: '*' });
    expect(ok.body.revocation?.reason).toBe('');
  });

  it('no secret in any stream entry, message, key or value in Redis', async () => {
    const [a, b] = await fleet();
    const one = await join_(a, 'agent-1');
    const two = await join_(b, 'agent-2');
    const l = await lease(one, 'search');
    await lease(two, 'other');
    const slow = await one.lease('slow');
    values.push(slow.body.value!);
    expect(slow.body.value).toContain(SLOW_SECRET);
    for (const body of [
      { scope: 'lease', target: l },
      { scope: 'credential', target: 'slow' },
      { scope: 'instance', target: 'join:agent-1' },
      { scope: 'all', target: '*' },
    ]) {
      expect((await revoke(a, body)).status).toBe(200);
    }
    await tap!.count(4);
    const everything = `${await dumpRedis(client)}\n${JSON.stringify(tap!.messages)}\n${a.logs.lines.join('\n')}\n${b.logs.lines.join('\n')}`;
    expect(values.length).toBeGreaterThan(3);
    for (const v of values) {
      expect(everything).not.toContain(v);
      // Nor a recognisable fragment (a JWT's signature, the exec secret's body).
      expect(everything).not.toContain(v.slice(-24));
    }
    expect(everything).not.toContain(SLOW_SECRET);
    expect((await readStream(client, STREAM)).map((e) => e.fields.scope)).toEqual(['lease', 'credential', 'instance', 'all']);
  });
});

describe('the revocation stream window', () => {
  it('window = the longest credential TTL, policy maxTtl or identity TTL', () => {
    const c = (over: Record<string, unknown>) => parseConfig(authoritySchema, JSON.stringify({ credentials: { a: { kind: 'jwt', audience: 'x', ttl: '5m' } }, ...over }), {});
    expect(revocationWindowMs(c({}))).toBe(3_600_000); // identity TTL default 1 h
    expect(revocationWindowMs(c({ identity: { ttl: '10m' } }))).toBe(600_000);
    expect(revocationWindowMs(c({ identity: { ttl: '10m' }, policies: [{ identities: ['*'], credentials: ['a'], maxTtl: '2h' }] }))).toBe(7_200_000);
    expect(revocationWindowMs(c({ identity: { ttl: '1m' }, credentials: { a: { kind: 'exec', command: ['x'], ttl: '3h' } } }))).toBe(10_800_000);
  });

  it('publishing trims entries older than the window (MINID, whole stream nodes)', async () => {
    const [a] = await fleet(1);
    // 1 000 entries from two hours ago (window: 1 h), as earlier publications would have left.
    const old = Date.now() - 2 * 3_600_000;
    for (let i = 0; i < 1000; i++) await client.xadd(STREAM, `${old + i}-0`, 'scope', 'all', 'target', '*', 'reason', 'old', 'at', new Date(old + i).toISOString(), 'by', 'x');
    const recent = Date.now() - 60_000;
    await client.xadd(STREAM, `${recent}-0`, 'scope', 'all', 'target', '*', 'reason', 'recent', 'at', new Date(recent).toISOString(), 'by', 'x');
    const r = await revoke(a, { scope: 'all', target: '*' });
    expect(r.status).toBe(200);
    const left = await readStream(client, STREAM);
    // Approximate trimming (`~`) removes whole nodes (100 entries by default): at most one node of old ones stays.
    expect(left.filter((e) => e.fields.reason === 'old').length).toBeLessThanOrEqual(100);
    expect(left.map((e) => e.id)).toContain(`${recent}-0`);
    expect(left.at(-1)!.id).toBe(r.body.revocation!.id);
  });
});
