import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBusProxy, type BusProxy } from '../helpers/bus-proxy.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { fleetSecrets, startReplica, type FleetSecrets, type Replica } from '../helpers/replicas.js';
import { adminRevoke, joinInstance, type Instance } from '../helpers/revoke-authority.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * Redis with a replica (Sentinel's setup): writes reach the replica asynchronously. An
 * instance revocation was answered 200 as soon as the master had the mark and the stream
 * entry; a failover before the replica had them lost both, silently — the epoch, written
 * long before, survives, so no authority replica re-seeded — and the revoked instance
 * leased again from the promoted replica. A revocation now waits (WAIT, 500 ms) for the
 * replicas to confirm it, and says so in its answer when they did not.
 */
let master: BusRedis;
let replica: BusRedis;
let link: BusProxy;
let secrets: FleetSecrets;
const authorities: Replica[] = [];
const instances: Instance[] = [];

beforeAll(async () => {
  secrets = fleetSecrets();
});
afterEach(async () => {
  for (const i of instances.splice(0)) i.close();
  for (const r of authorities.splice(0)) await r.stop();
  await link?.close();
  await replica?.kill();
  await master?.kill();
});
afterAll(() => secrets?.dispose());

const CONFIG = {
  credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
};

async function replicatedRedis(): Promise<void> {
  master = await startBusRedis({ args: ['--repl-diskless-sync-delay', '0'] });
  link = await startBusProxy(master.port); // the replication link, which can be partitioned
  replica = await startBusRedis({ args: ['--replicaof', '127.0.0.1', String(link.port)] });
  const r = new Redis(replica.url);
  await waitFor(async () => /master_link_status:up/.test(await r.info('replication')), { timeoutMs: 10_000, message: 'the replica linked' });
  r.disconnect();
}

describe('instance revocation on a Redis with a replica', () => {
  it('the replication link partitioned: the answer says the replicas did not confirm it; failing over loses it', async () => {
    await replicatedRedis();
    authorities.push(await startReplica('a', secrets, master.url, CONFIG));
    const a = authorities[0]!;
    const token = (await a.running.authority.createJoinToken('test', 'agent-ha', 60_000)).token;
    const victim = await joinInstance(a.url, secrets.ca.certPem, token);
    instances.push(victim);
    expect((await victim.lease('search')).status).toBe(200);
    await sleep(200); // replicated so far

    link.partition();
    const revoked = await adminRevoke(a.url, secrets.ca.certPem, { scope: 'instance', target: victim.identity, reason: 'ha' });
    expect(revoked.status).toBe(200);

    // Failover: the master dies, the replica is promoted with what it had.
    await master.kill();
    const promoted = new Redis(replica.url);
    await promoted.replicaof('NO', 'ONE');
    const kept = await promoted.exists(`leash:revoked:instance:${victim.identity}`);
    promoted.disconnect();
    // Durable (the promoted replica has the mark), or the answer said it might not be.
    if (kept !== 1) expect(revoked.body.warning).toMatch(/0 of 1 replicas confirmed it/);
  });

  it('replication healthy: answered without a warning, and the replica has the mark', async () => {
    await replicatedRedis();
    authorities.push(await startReplica('a', secrets, master.url, CONFIG));
    const a = authorities[0]!;
    const token = (await a.running.authority.createJoinToken('test', 'agent-ok', 60_000)).token;
    const victim = await joinInstance(a.url, secrets.ca.certPem, token);
    instances.push(victim);
    const revoked = await adminRevoke(a.url, secrets.ca.certPem, { scope: 'instance', target: victim.identity, reason: 'ha' });
    expect(revoked.status).toBe(200);
    expect(revoked.body.warning).toBeUndefined();
    const r = new Redis(replica.url);
    expect(await r.exists(`leash:revoked:instance:${victim.identity}`)).toBe(1);
    r.disconnect();
  });
});
