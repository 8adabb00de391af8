import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { MemoryStore } from '../../src/authority/leases/memory.js';
import { RedisStore } from '../../src/authority/leases/redis.js';
import { hashJoinToken, JOIN_TOKEN_PREFIX, JoinTokens } from '../../src/authority/leases/join-tokens.js';
import type { AuthorityStore } from '../../src/authority/leases/types.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sleep } from '../helpers/wait.js';

/** The join-token key (an authority derives it from its CA key; any 32 bytes here). */
const JT_KEY = Buffer.alloc(32, 7);

/**
 * One contract, two stores. Memory runs on an injected clock; Redis on real time with
 * ~300 ms expiries (Redis itself expires the keys), so "time passes" is the harness's job.
 */
interface Harness {
  /** Two stores over the same data: for Redis, two separate connections (two authority replicas). */
  replicas(): [AuthorityStore, AuthorityStore];
  now(): number;
  pass(ms: number): Promise<void>;
}


let redis: TestRedis;
const clients: Redis[] = [];
const stores: AuthorityStore[] = [];
let prefixes = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await Promise.all(clients.splice(0).map((c) => c.quit()));
});
afterAll(async () => {
  await redis?.stop();
});

function memoryHarness(): Harness {
  let t = 1_700_000_000_000;
  const clock = { wallMs: () => t };
  return {
    replicas() {
      const s = new MemoryStore({ clock });
      stores.push(s);
      return [s, s];
    },
    now: () => t,
    pass: async (ms) => {
      t += ms;
    },
  };
}

function redisHarness(): Harness {
  return {
    replicas() {
      // A fresh prefix per test keeps tests independent without flushing.
      const prefix = `t${++prefixes}:`;
      const a = new Redis(redis.url);
      const b = new Redis(redis.url);
      clients.push(a, b);
      const pair: [AuthorityStore, AuthorityStore] = [new RedisStore(a, { prefix }), new RedisStore(b, { prefix })];
      stores.push(...pair);
      return pair;
    },
    now: () => Date.now(),
    pass: (ms) => sleep(ms),
  };
}

const HARNESSES: [string, () => Harness][] = [
  ['MemoryStore', memoryHarness],
  ['RedisStore', redisHarness],
];

describe.each(HARNESSES)('%s: AuthorityStore contract', (_name, makeHarness) => {
  let h: Harness;
  let store: AuthorityStore;
  let n = 0;
  const lease = (over: Partial<LeaseRecord> = {}): LeaseRecord => ({
    id: `lse_${++n}`,
    instance: 'spiffe://leash.local/join/a',
    credential: 'openai',
    fingerprint: fingerprint(`value-${n}`),
    version: 'v1',
    issuedAtMs: h.now(),
    expiresAtMs: h.now() + 60_000,
    ...over,
  });
  const ids = (rs: LeaseRecord[]) => rs.map((r) => r.id).sort();

  const setup = () => {
    h = makeHarness();
    [store] = h.replicas();
  };

  it('put / get round-trip; unknown ids are absent; results are copies', async () => {
    setup();
    const r = lease();
    await store.putLease(r);
    expect(await store.getLease(r.id)).toEqual(r);
    expect(await store.getLease('lse_nope')).toBeUndefined();
    const got = (await store.getLease(r.id))!;
    got.credential = 'mutated';
    expect((await store.getLease(r.id))!.credential).toBe('openai');
  });

  it('putLeaseThenCheckRevoked stores like putLease, then tells whether the instance is marked revoked', async () => {
    setup();
    const [a, b] = h.replicas();
    const r = lease();
    expect(await a.putLeaseThenCheckRevoked!(r)).toBe(false);
    expect(await b.getLease(r.id)).toEqual(r);
    expect(ids(await b.listLeases({ instance: r.instance }))).toEqual([r.id]);
    await b.revokeIdentity(r.instance, h.now() + 60_000);
    const r2 = lease();
    expect(await a.putLeaseThenCheckRevoked!(r2)).toBe(true);
    expect(await b.getLease(r2.id)).toEqual(r2); // stored all the same: the caller takes it back
  });

  it('put with an existing id replaces the record, and listings follow it', async () => {
    setup();
    const r = lease();
    await store.putLease(r);
    const moved = { ...r, instance: 'spiffe://leash.local/join/b', credential: 'search', version: 'v2' };
    await store.putLease(moved);
    expect(await store.getLease(r.id)).toEqual(moved);
    expect(await store.listLeases({ instance: r.instance })).toEqual([]);
    expect(await store.listLeases({ credential: 'openai' })).toEqual([]);
    expect(await store.listLeases({ instance: moved.instance })).toEqual([moved]);
    expect(await store.listLeases({ credential: 'search' })).toEqual([moved]);
    expect(await store.listLeases()).toEqual([moved]);
  });

  it('delete: true once, then false; gone from get and every listing', async () => {
    setup();
    const r = lease();
    const keep = lease();
    await store.putLease(r);
    await store.putLease(keep);
    expect(await store.deleteLease(r.id)).toBe(true);
    expect(await store.deleteLease(r.id)).toBe(false);
    expect(await store.deleteLease('lse_never')).toBe(false);
    expect(await store.getLease(r.id)).toBeUndefined();
    expect(ids(await store.listLeases())).toEqual([keep.id]);
    expect(ids(await store.listLeases({ instance: r.instance }))).toEqual([keep.id]);
    expect(ids(await store.listLeases({ credential: r.credential }))).toEqual([keep.id]);
  });

  it('lists by instance, by credential, by both, and all', async () => {
    setup();
    const A = 'spiffe://leash.local/join/a';
    const B = 'spiffe://leash.local/ns/agents/sa/b';
    const a1 = lease({ instance: A, credential: 'openai' });
    const a2 = lease({ instance: A, credential: 'search' });
    const b1 = lease({ instance: B, credential: 'openai' });
    for (const r of [a1, a2, b1]) await store.putLease(r);
    expect(ids(await store.listLeases({ instance: A }))).toEqual(ids([a1, a2]));
    expect(ids(await store.listLeases({ instance: B }))).toEqual([b1.id]);
    expect(ids(await store.listLeases({ credential: 'openai' }))).toEqual(ids([a1, b1]));
    expect(ids(await store.listLeases({ credential: 'search' }))).toEqual([a2.id]);
    expect(ids(await store.listLeases({ instance: A, credential: 'openai' }))).toEqual([a1.id]);
    expect(ids(await store.listLeases({ instance: B, credential: 'search' }))).toEqual([]);
    expect(ids(await store.listLeases({ instance: 'spiffe://leash.local/none' }))).toEqual([]);
    expect(ids(await store.listLeases())).toEqual(ids([a1, a2, b1]));
    expect(await store.listLeases({})).toEqual(await store.listLeases());
  });

  it('limit: at most that many leases, those expiring soonest (the bounded metrics scan)', async () => {
    setup();
    const rs = [30_000, 10_000, 50_000, 20_000].map((ttl) => lease({ expiresAtMs: h.now() + ttl }));
    for (const r of rs) await store.putLease(r);
    expect((await store.listLeases({ limit: 2 })).map((r) => r.id).sort()).toEqual([rs[1]!.id, rs[3]!.id].sort());
    expect(await store.listLeases({ limit: 10 })).toHaveLength(4);
  });

  it('expiry: a lease disappears from get, every listing and delete at expiresAtMs', async () => {
    setup();
    const short = lease({ expiresAtMs: h.now() + 300 });
    const long = lease({ expiresAtMs: h.now() + 60_000 });
    await store.putLease(short);
    await store.putLease(long);
    expect(ids(await store.listLeases({ instance: short.instance }))).toEqual(ids([short, long]));
    await h.pass(350);
    await expect.poll(() => store.getLease(short.id), { timeout: 2000, interval: 50 }).toBeUndefined();
    expect(ids(await store.listLeases())).toEqual([long.id]);
    expect(ids(await store.listLeases({ instance: short.instance }))).toEqual([long.id]);
    expect(ids(await store.listLeases({ credential: short.credential }))).toEqual([long.id]);
    expect(await store.deleteLease(short.id)).toBe(false);
    expect(await store.getLease(long.id)).toEqual(long);
  });

  it('a record put already expired is never visible', async () => {
    setup();
    const r = lease({ expiresAtMs: h.now() - 1 });
    await store.putLease(r);
    expect(await store.getLease(r.id)).toBeUndefined();
    expect(await store.listLeases()).toEqual([]);
  });

  it('refuses records that could hold a value instead of a fingerprint, or are malformed', async () => {
    setup();
    for (const bad of [
      lease({ fingerprint: 'sk-live-0123456789abcdef' }),
      lease({ fingerprint: 'sha256:0123456789abcdef0123' }),
      lease({ id: '' }),
      lease({ id: 'has space' }),
      lease({ expiresAtMs: Number.NaN }),
      lease({ instance: '' }),
    ]) {
      await expect(store.putLease(bad)).rejects.toMatchObject({ code: 'LEASH_ERR_STORE_RECORD' });
    }
    expect(await store.listLeases()).toEqual([]);
  });

  it('records written by one replica are seen by the other', async () => {
    setup();
    const [a, b] = h.replicas();
    const r = lease();
    await a.putLease(r);
    expect(await b.getLease(r.id)).toEqual(r);
    expect(await b.deleteLease(r.id)).toBe(true);
    expect(await a.getLease(r.id)).toBeUndefined();
  });

  describe('join tokens', () => {
    const hash = (s: string) => hashJoinToken(s);

    it('taken once: the first take gets the record, every later one nothing', async () => {
      setup();
      const rec = { identity: 'demo-1', expiresAtMs: h.now() + 60_000 };
      await store.putJoinToken(hash('t1'), rec);
      expect(await store.takeJoinToken(hash('t1'), h.now())).toEqual(rec);
      expect(await store.takeJoinToken(hash('t1'), h.now())).toBeUndefined();
      expect(await store.takeJoinToken(hash('unknown'), h.now())).toBeUndefined();
    });

    it('expired tokens cannot be taken', async () => {
      setup();
      await store.putJoinToken(hash('t2'), { identity: 'demo-2', expiresAtMs: h.now() + 300 });
      await h.pass(350);
      expect(await store.takeJoinToken(hash('t2'), h.now())).toBeUndefined();
      // nowMs is authoritative too: a token past expiry by the caller's clock is refused.
      await store.putJoinToken(hash('t3'), { identity: 'demo-3', expiresAtMs: h.now() + 60_000 });
      expect(await store.takeJoinToken(hash('t3'), h.now() + 60_000)).toBeUndefined();
    });

    it('only a hash is accepted as the key, never a token', async () => {
      setup();
      await expect(store.putJoinToken(`${JOIN_TOKEN_PREFIX}abc`, { identity: 'x', expiresAtMs: h.now() + 1000 })).rejects.toMatchObject({
        code: 'LEASH_ERR_STORE_RECORD',
      });
    });

    it('20 concurrent takers on two replicas: exactly one wins', async () => {
      setup();
      const [a, b] = h.replicas();
      for (let round = 0; round < 5; round++) {
        const key = hash(`race-${round}`);
        await a.putJoinToken(key, { identity: `racer-${round}`, expiresAtMs: h.now() + 60_000 });
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).takeJoinToken(key, h.now())));
        const winners = results.filter((r) => r !== undefined);
        expect(winners).toEqual([{ identity: `racer-${round}`, expiresAtMs: expect.any(Number) }]);
      }
    });

    it('JoinTokens: create → redeem once; used, expired, unknown and malformed all fail alike', async () => {
      setup();
      const jt = new JoinTokens(store, JT_KEY);
      const token = await jt.create('demo-1', 60_000, h.now());
      expect(token).toMatch(/^leash_jt_[A-Za-z0-9_-]{43}$/);
      expect(await jt.redeem(token, h.now())).toBe('demo-1');

      const expired = await jt.create('demo-2', 300, h.now());
      await h.pass(350);
      const unknown = `${JOIN_TOKEN_PREFIX}${'A'.repeat(43)}`;
      const messages = new Set<string>();
      for (const bad of [token, expired, unknown, 'leash_jt_short', '', token.toUpperCase()]) {
        const err = await jt.redeem(bad, h.now()).then(
          () => undefined,
          (e: unknown) => e as { code: string; message: string },
        );
        expect(err, bad).toMatchObject({ code: 'LEASH_ERR_JOIN_TOKEN' });
        messages.add(err!.message);
      }
      expect([...messages]).toEqual(['join token is invalid, expired or already used']);
    });

    it('JoinTokens: a record an authority did not write, or altered, is refused (whoever can write the store cannot mint or retarget a token)', async () => {
      setup();
      const jt = new JoinTokens(store, JT_KEY);
      const fresh = () => `${JOIN_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
      const later = h.now() + 60_000;
      const refused = async (token: string) => expect(jt.redeem(token, h.now())).rejects.toMatchObject({ code: 'LEASH_ERR_JOIN_TOKEN' });
      // At the plain sha256 of a token of the writer's choosing (all it can compute).
      const plain = fresh();
      await store.putJoinToken(hashJoinToken(plain), { identity: 'prod-db-1', expiresAtMs: later });
      await refused(plain);
      // At the right key (which a writer cannot compute): without a MAC, or with another key's.
      const noMac = fresh();
      await store.putJoinToken(jt.storeKey(noMac), { identity: 'prod-db-1', expiresAtMs: later });
      await refused(noMac);
      const other = new JoinTokens(store, Buffer.alloc(32, 9));
      const otherKey = await other.create('prod-db-1', 60_000, h.now());
      await refused(otherKey);
      // A real token whose record was changed: identity, or expiry.
      for (const change of [{ identity: 'prod-db-1' }, { expiresAtMs: later + 3_600_000 }]) {
        const token = await jt.create('dev-1', 60_000, h.now());
        const record = (await store.takeJoinToken(jt.storeKey(token), h.now()))!;
        await store.putJoinToken(jt.storeKey(token), { ...record, ...change });
        await refused(token);
      }
      // Unchanged, it still works.
      expect(await jt.redeem(await jt.create('dev-2', 60_000, h.now()), h.now())).toBe('dev-2');
    });

    it('JoinTokens: 20 concurrent redeems on two replicas, exactly one succeeds', async () => {
      setup();
      const [a, b] = h.replicas();
      const token = await new JoinTokens(a, JT_KEY).create('fleet-7', 60_000, h.now());
      const services = [new JoinTokens(a, JT_KEY), new JoinTokens(b, JT_KEY)];
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => services[i % 2]!.redeem(token, h.now())));
      expect(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<string>).value)).toEqual(['fleet-7']);
      expect(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === 'LEASH_ERR_JOIN_TOKEN')).toBe(true);
    });

    it('JoinTokens: identity names and TTLs are validated', async () => {
      setup();
      const jt = new JoinTokens(store, JT_KEY);
      for (const ok of ['a', 'demo-1', 'x.y_z-0', 'a'.repeat(63), '0abc']) {
        await expect(jt.create(ok, 1000, h.now())).resolves.toMatch(/^leash_jt_/);
      }
      for (const bad of ['', 'A', '-a', '.a', '_a', 'a/b', 'a b', 'a'.repeat(64), 'démo', 'a:b']) {
        await expect(jt.create(bad, 1000, h.now()), bad).rejects.toMatchObject({ code: 'LEASH_ERR_JOIN_TOKEN_REQUEST' });
      }
      for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        await expect(jt.create('ok', ttl, h.now())).rejects.toMatchObject({ code: 'LEASH_ERR_JOIN_TOKEN_REQUEST' });
      }
    });

    it('JoinTokens: two tokens for one identity are independent', async () => {
      setup();
      const jt = new JoinTokens(store, JT_KEY);
      const t1 = await jt.create('same', 60_000, h.now());
      const t2 = await jt.create('same', 60_000, h.now());
      expect(t1).not.toBe(t2);
      expect(await jt.redeem(t2, h.now())).toBe('same');
      expect(await jt.redeem(t1, h.now())).toBe('same');
    });
  });

  describe('identities and revocation marks', () => {
    const A = 'spiffe://leash.local/join/a';
    const B = 'spiffe://leash.local/ns/agents/sa/b';

    it('an identity is known until its certificate ends; replicas agree; a shorter put never shortens it', async () => {
      setup();
      const [a, b] = h.replicas();
      expect(await a.hasIdentity(A)).toBe(false);
      await a.putIdentity(A, h.now() + 600);
      await a.putIdentity(A, h.now() + 300); // an earlier end: ignored
      expect(await b.hasIdentity(A)).toBe(true);
      expect(await b.hasIdentity(B)).toBe(false);
      await h.pass(350);
      expect(await a.hasIdentity(A)).toBe(true);
      await h.pass(300);
      await expect.poll(() => a.hasIdentity(A), { timeout: 2000, interval: 50 }).toBe(false);
      await a.putIdentity(B, h.now() - 1); // already over: nothing kept
      expect(await a.hasIdentity(B)).toBe(false);
    });

    it('a revocation mark lasts until its end, on every replica, and is never shortened', async () => {
      setup();
      const [a, b] = h.replicas();
      expect(await a.isIdentityRevoked(A)).toBe(false);
      await a.revokeIdentity(A, h.now() + 600);
      await b.revokeIdentity(A, h.now() + 300);
      expect(await b.isIdentityRevoked(A)).toBe(true);
      expect(await a.isIdentityRevoked(B)).toBe(false);
      // The registry and the marks are separate: revoking does not make an identity known.
      expect(await a.hasIdentity(A)).toBe(false);
      await h.pass(350);
      expect(await b.isIdentityRevoked(A)).toBe(true);
      await h.pass(300);
      await expect.poll(() => a.isIdentityRevoked(A), { timeout: 2000, interval: 50 }).toBe(false);
    });

    it('refuses malformed identities and times', async () => {
      setup();
      for (const [id, ms] of [['', h.now() + 1000], ['has space', h.now() + 1000], [A, Number.NaN], [A, -1]] as [string, number][]) {
        await expect(store.putIdentity(id, ms)).rejects.toMatchObject({ code: 'LEASH_ERR_STORE_RECORD' });
        await expect(store.revokeIdentity(id, ms)).rejects.toMatchObject({ code: 'LEASH_ERR_STORE_RECORD' });
      }
    });
  });

  it('after close(), every operation fails with LEASH_ERR_STORE; close is idempotent', async () => {
    setup();
    await store.close();
    await store.close();
    await expect(store.getLease('x')).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
    await expect(store.listLeases()).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
    await expect(store.takeJoinToken(hashJoinToken('x'), h.now())).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
    await expect(store.hasIdentity('spiffe://leash.local/join/a')).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
    await expect(store.isIdentityRevoked('spiffe://leash.local/join/a')).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
  });
});

describe('RedisStore: identity keys', () => {
  it('uses <prefix>identity:<id> and <prefix>revoked:instance:<id>, expiring at the given end, holding only the time', async () => {
    const client = new Redis(redis.url);
    clients.push(client);
    const store = new RedisStore(client, { prefix: 'keys:' });
    stores.push(store);
    const id = 'spiffe://leash.local/join/k';
    const end = Date.now() + 60_000;
    await store.putIdentity(id, end);
    await store.revokeIdentity(id, end + 5_000);
    expect(await client.get(`keys:identity:${id}`)).toBe(String(end));
    expect(await client.get(`keys:revoked:instance:${id}`)).toBe(String(end + 5_000));
    expect(await client.pexpiretime(`keys:identity:${id}`)).toBe(end);
    expect(await client.pexpiretime(`keys:revoked:instance:${id}`)).toBe(end + 5_000);
  });
});
