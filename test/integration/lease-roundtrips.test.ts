import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { RedisStore } from '../../src/authority/leases/redis.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { joinInstance, type Instance } from '../helpers/revoke-authority.js';

/**
 * Issue 11 (authority ≥ 2,000 leases/s with Redis): a lease's Redis work is batched.
 * Round trips are counted by a TCP relay in front of a private redis-server: a ROUND TRIP
 * is a burst of client bytes that follows a reply (or the connection's start) — however
 * TCP splits one write, a client that waits for an answer before sending more starts a
 * new one. Commands are counted with INFO commandstats.
 */
interface Relay {
  url: string;
  roundTrips(): number;
  close(): Promise<void>;
}

async function startRelay(targetPort: number): Promise<Relay> {
  let trips = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    let replied = true; // the first bytes a client sends start a round trip
    const up = createConnection({ host: '127.0.0.1', port: targetPort });
    sockets.add(client).add(up);
    client.on('data', (d) => {
      if (replied) trips++;
      replied = false;
      up.write(d);
    });
    up.on('data', (d) => {
      replied = true;
      client.write(d);
    });
    const end = () => (client.destroy(), up.destroy());
    for (const s of [client, up]) s.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    roundTrips: () => trips,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Calls per command since the server started (INFO commandstats). */
async function commandCalls(admin: Redis): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of (await admin.info('commandstats')).matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}
function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  // Commands run inside scripts are counted too: keep those sent by the client. Every
  // index add (EVAL) reads TIME once: only a TIME beyond those was sent by the client.
  const inScripts = new Set(['info', 'zadd', 'zrange', 'pexpireat', 'zcount', 'zremrangebyrank']);
  const d = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
  for (const [k, v] of Object.entries(after)) if (!inScripts.has(k) && v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  const clientTime = d('time') - d('eval');
  if (clientTime === 0) delete out.time;
  else out.time = clientTime;
  return out;
}

let redis: TestRedis;
let admin: Redis;
let relay: Relay | undefined;
let authority: TestAuthority | undefined;
const instances: Instance[] = [];
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterEach(async () => {
  for (const i of instances.splice(0)) i.close();
  await authority?.stop();
  await relay?.close();
  authority = relay = undefined;
  await admin.flushall();
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

const lease = (over: Partial<LeaseRecord> = {}): LeaseRecord => ({
  id: `lse_rt_${++n}`,
  instance: 'spiffe://leash.local/join/a',
  credential: 'search',
  fingerprint: fingerprint(`v${n}`),
  version: 'v1',
  issuedAtMs: Date.now(),
  expiresAtMs: Date.now() + 60_000,
  ...over,
});

describe('RedisStore: a lease is one round trip', () => {
  it('putLeaseThenCheckRevoked: three index adds, the record and the mark read, in one pipeline, in that order', async () => {
    relay = await startRelay(redis.port);
    // No auto-pipelining: the batching is the store's own, not the client's.
    const client = new Redis(relay.url);
    const store = new RedisStore(client);
    try {
      await client.ping();
      const r = lease();
      const before = await commandCalls(admin);
      const trips = relay.roundTrips();
      expect(await store.putLeaseThenCheckRevoked(r)).toBe(false);
      expect(relay.roundTrips() - trips).toBe(1);
      expect(delta(before, await commandCalls(admin))).toEqual({ eval: 3, set: 1, exists: 1 });
      expect((await store.listLeases({ instance: r.instance })).map((l) => l.id)).toEqual([r.id]);
      expect((await store.listLeases({ credential: 'search' })).map((l) => l.id)).toEqual([r.id]);

      // The mark is read after the record is written: a revocation set before is seen.
      await store.revokeIdentity(r.instance, Date.now() + 60_000);
      const again = relay.roundTrips();
      expect(await store.putLeaseThenCheckRevoked(lease())).toBe(true);
      expect(relay.roundTrips() - again).toBe(1);

      // putLease alone: one round trip too.
      const plain = relay.roundTrips();
      await store.putLease(lease({ instance: 'spiffe://leash.local/join/b' }));
      expect(relay.roundTrips() - plain).toBe(1);
    } finally {
      await store.close();
      client.disconnect();
    }
  });

  it('works after SCRIPT FLUSH (no NOSCRIPT gap: the record is never stored without its indexes)', async () => {
    const store = new RedisStore(redis.url);
    try {
      await store.putLease(lease());
      await admin.script('FLUSH');
      const r = lease({ instance: 'spiffe://leash.local/join/c' });
      await store.putLease(r);
      expect((await store.listLeases({ instance: r.instance })).map((l) => l.id)).toEqual([r.id]);
    } finally {
      await store.close();
    }
  });

  it('an index add refused (WRONGTYPE) takes the record back and fails the put', async () => {
    const store = new RedisStore(redis.url);
    try {
      const r = lease({ credential: 'clobbered' });
      await admin.set('leash:leases:by-credential:clobbered', 'not a zset');
      await expect(store.putLease(r)).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
      expect(await admin.exists(`leash:lease:${r.id}`)).toBe(0);
    } finally {
      await store.close();
    }
  });
});

describe('authority: one lease, counted at Redis', () => {
  it('revocation mark + epoch in one round trip, the writes in one, the audit XADD after: 3 round trips, no epoch SET', async () => {
    relay = await startRelay(redis.port);
    const a = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
      redis: relay.url,
    });
    authority = a;
    const agent = await joinInstance(a.url, a.caPem, await a.token('agent-1'));
    instances.push(agent);
    expect((await agent.lease('search')).status).toBe(200); // warm: epoch known, connection up
    // The audit XADD is fire-and-forget: wait until the relay has been quiet for 50 ms.
    const settle = async () => {
      let last = -1;
      while (last !== relay!.roundTrips()) {
        last = relay!.roundTrips();
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await settle();
    const before = await commandCalls(admin);
    const trips = relay.roundTrips();
    expect((await agent.lease('search')).status).toBe(200);
    await settle();
    expect(delta(before, await commandCalls(admin))).toEqual({ exists: 2, get: 1, eval: 3, set: 1, xadd: 1 });
    expect(relay.roundTrips() - trips).toBe(3);
  });
});
