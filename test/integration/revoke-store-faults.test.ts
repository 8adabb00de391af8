import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { fleetSecrets, startReplica, type FleetSecrets, type Replica } from '../helpers/replicas.js';
import { adminRevoke, joinInstance, readStream, type Instance } from '../helpers/revoke-authority.js';

/**
 * Revocations when Redis answers errors for the lease records and indexes (a key of the wrong type at
 * a leash key: WRONGTYPE; the same path as any read error there). Two replicas, one Redis.
 *
 * `revoke --instance` listed the instance's leases *before* writing its revocation mark:
 * an error from that listing answered 503 with nothing marked and nothing published, at
 * every retry — the instance kept renewing its identity and its sidecar kept its leases.
 * Now the mark and the publication come first and whatever the listing cannot reach is
 * said in the answer's `warning` (the records expire on their own); the same for
 * `credential` and `all`, which answered 503 after they had been published; and a lease
 * whose record cannot be read is revoked (published) anyway, as an unknown one is.
 */
let redis: TestRedis;
let secrets: FleetSecrets;
let client: Redis;
const replicas: Replica[] = [];
const instances: Instance[] = [];
const STREAM = 'leash:revocations';

beforeAll(async () => {
  redis = await startRedis();
  secrets = fleetSecrets();
  client = new Redis(redis.url);
});
afterEach(async () => {
  for (const i of instances.splice(0)) i.close();
  for (const r of replicas.splice(0)) await r.stop();
  await client.flushall();
});
afterAll(async () => {
  client?.disconnect();
  secrets?.dispose();
  await redis?.stop();
});

const CONFIG = {
  credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
};

async function fleet(): Promise<[Replica, Replica]> {
  for (const name of ['a', 'b']) replicas.push(await startReplica(name, secrets, redis.url, CONFIG));
  return [replicas[0]!, replicas[1]!];
}

async function join_(r: Replica, name: string): Promise<Instance> {
  const token = (await r.running.authority.createJoinToken('test', name, 60_000)).token;
  const i = await joinInstance(r.url, secrets.ca.certPem, token);
  instances.push(i);
  return i;
}

const CASES = [
  { scope: 'lease', target: (_i: Instance, lease: string) => lease, broken: (_i: Instance, lease: string) => `leash:lease:${lease}` },
  { scope: 'instance', target: (i: Instance, _l: string) => i.identity, broken: (i: Instance, _l: string) => `leash:leases:by-instance:${i.identity}` },
  { scope: 'credential', target: () => 'search', broken: () => 'leash:leases:by-credential:search' },
  { scope: 'all', target: () => '*', broken: () => 'leash:leases:all' },
] as const;

describe('revocation while the lease indexes answer errors', () => {
  it.each(CASES)('$scope: recorded and published, answered 200 with a warning, never 503 after the fact', async ({ scope, target, broken }) => {
    const [a, b] = await fleet();
    const one = await join_(a, `agent-${scope}`);
    const leased = await one.lease('search');
    expect(leased.status).toBe(200);
    // The key becomes a hash: every read of it is WRONGTYPE from now on.
    const key = broken(one, leased.body.lease!);
    await client.del(key);
    await client.hset(key, 'not', 'what leash wrote');

    const answer = await adminRevoke(b.url, secrets.ca.certPem, { scope, target: target(one, leased.body.lease!), reason: 'wrongtype' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.warning).toMatch(/could not be (listed|deleted)/);
    expect(JSON.stringify(answer.body)).not.toContain(leased.body.value!);
    // Published: sidecars and verifiers act on it.
    const stream = await readStream(client, STREAM);
    expect(stream.map((e) => e.id)).toContain(answer.body.revocation!.id);
    if (scope === 'instance') {
      // Marked: neither replica serves the instance any more.
      expect(await client.exists(`leash:revoked:instance:${one.identity}`)).toBe(1);
      expect((await one.lease('search')).status).toBe(401);
      expect((await one.renew()).status).toBe(401);
    }
    // Said in the authority's log, without the value.
    const warned = b.logs.lines.filter((l) => /could not be (listed|deleted)/.test(JSON.stringify(l)));
    expect(warned.length).toBeGreaterThan(0);
    expect(JSON.stringify(b.logs.lines)).not.toContain(leased.body.value!);
  });
});

describe('revocation with a corrupt identity registry entry', () => {
  it.each(['99999999999999999999', 'not a number', '-5'])('identity entry %s: the instance is still marked and refused', async (value) => {
    const [a, b] = await fleet();
    const one = await join_(a, `agent-registry-${value.length}`);
    await client.set(`leash:identity:${one.identity}`, value);
    const answer = await adminRevoke(b.url, secrets.ca.certPem, { scope: 'instance', target: one.identity, reason: 'registry' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const ttl = await client.pttl(`leash:revoked:instance:${one.identity}`);
    expect(ttl).toBeGreaterThan(3_600_000);
    expect(ttl).toBeLessThan(26 * 3_600_000 + 10 * 60_000);
    expect((await one.lease('search')).status).toBe(401);
  });
});
