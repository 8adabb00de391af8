import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { hashJoinToken, JoinTokens } from '../../src/authority/leases/join-tokens.js';
import { RedisStore, type CorruptRecord } from '../../src/authority/leases/redis.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sleep } from '../helpers/wait.js';

/** The join-token key (an authority derives it from its CA key; any 32 bytes here). */
const JT_KEY = Buffer.alloc(32, 7);

/** What only RedisStore has: its key layout, lazy index cleanup, corrupt data, outages. */
let redis: TestRedis;
let admin: Redis;
const clients: Redis[] = [];
const stores: RedisStore[] = [];
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  clients.splice(0).forEach((c) => c.disconnect());
  await admin.flushall();
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

function client(opts: RedisOptions = {}): Redis {
  const c = new Redis({ host: '127.0.0.1', port: redis.port, ...opts });
  clients.push(c);
  return c;
}
function store(opts: ConstructorParameters<typeof RedisStore>[1] = {}, c: Redis = client()): RedisStore {
  const s = new RedisStore(c, opts);
  stores.push(s);
  return s;
}
const lease = (over: Partial<LeaseRecord> = {}): LeaseRecord => ({
  id: `lse_${++n}`,
  instance: 'spiffe://leash.local/join/a',
  credential: 'openai',
  fingerprint: fingerprint(`v${n}`),
  version: 'v1',
  issuedAtMs: Date.now(),
  expiresAtMs: Date.now() + 60_000,
  ...over,
});

describe('RedisStore key layout', () => {
  it('lease JSON with PXAT, three sorted-set indexes scored by expiry, each expiring with its last member', async () => {
    const s = store();
    const r1 = lease({ expiresAtMs: Date.now() + 30_000 });
    const r2 = lease({ expiresAtMs: Date.now() + 90_000 });
    await s.putLease(r1);
    await s.putLease(r2);
    expect(JSON.parse((await admin.get(`leash:lease:${r1.id}`))!)).toEqual(r1);
    expect(await admin.type(`leash:lease:${r1.id}`)).toBe('string');
    expect(await admin.pexpiretime(`leash:lease:${r1.id}`)).toBe(r1.expiresAtMs);
    for (const idx of ['leash:leases:by-instance:spiffe://leash.local/join/a', 'leash:leases:by-credential:openai', 'leash:leases:all']) {
      expect(await admin.type(idx)).toBe('zset');
      expect(await admin.zrange(idx, '0', '-1', 'WITHSCORES')).toEqual([r1.id, String(r1.expiresAtMs), r2.id, String(r2.expiresAtMs)]);
      expect(await admin.pexpiretime(idx)).toBe(r2.expiresAtMs);
    }
    // A later, shorter lease does not shorten the index's life.
    await s.putLease(lease({ expiresAtMs: Date.now() + 10_000 }));
    expect(await admin.pexpiretime('leash:leases:all')).toBe(r2.expiresAtMs);
    expect(s.keys().lease('x')).toBe('leash:lease:x');
  });

  it('join tokens live at join:<keyed hash hex> with PXAT and a MAC, and the prefix is configurable', async () => {
    const s = store({ prefix: 'acme:' });
    const jt = new JoinTokens(s, JT_KEY);
    const token = await jt.create('demo-1', 60_000, Date.now());
    const keys = await admin.keys('*');
    expect(keys).toEqual([`acme:join:${jt.storeKey(token)}`]);
    // Keyed: not the token's plain sha256, which anyone could compute for a token of their own.
    expect(jt.storeKey(token)).not.toBe(hashJoinToken(token));
    expect(JSON.parse((await admin.get(keys[0]!))!)).toEqual({ identity: 'demo-1', expiresAtMs: expect.any(Number), mac: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(await admin.pttl(keys[0]!)).toBeGreaterThan(55_000);
    await s.putLease(lease({ id: 'lse_p' }));
    expect((await admin.keys('*')).sort()).toEqual(
      [`acme:join:${jt.storeKey(token)}`, 'acme:lease:lse_p', 'acme:leases:all', 'acme:leases:by-credential:openai', 'acme:leases:by-instance:spiffe://leash.local/join/a'].sort(),
    );
    await jt.redeem(token, Date.now());
    expect(await admin.exists(`acme:join:${jt.storeKey(token)}`)).toBe(0);
  });

  it('listing removes expired members from the index it reads (ZREMRANGEBYSCORE) and dangling ids', async () => {
    const s = store();
    const short = lease({ expiresAtMs: Date.now() + 300 });
    const long = lease();
    const dangling = lease();
    for (const r of [short, long, dangling]) await s.putLease(r);
    await admin.del(`leash:lease:${dangling.id}`); // the record is gone, its index entries are not
    expect(await admin.zcard('leash:leases:by-instance:spiffe://leash.local/join/a')).toBe(3);
    await sleep(350);
    expect((await s.listLeases({ instance: long.instance })).map((r) => r.id)).toEqual([long.id]);
    expect(await admin.zrange('leash:leases:by-instance:spiffe://leash.local/join/a', '0', '-1')).toEqual([long.id]);
    // Other indexes are cleaned when they are read.
    expect(await admin.zcard('leash:leases:by-credential:openai')).toBe(3);
    expect((await s.listLeases({ credential: 'openai' })).map((r) => r.id)).toEqual([long.id]);
    expect(await admin.zcard('leash:leases:by-credential:openai')).toBe(1);
  });

  it('deleteLease removes the record and its index entries', async () => {
    const s = store();
    const r = lease();
    await s.putLease(r);
    expect(await s.deleteLease(r.id)).toBe(true);
    expect(await admin.exists(`leash:lease:${r.id}`)).toBe(0);
    expect(await admin.zscore('leash:leases:all', r.id)).toBeNull();
    expect(await admin.zscore('leash:leases:by-credential:openai', r.id)).toBeNull();
  });

  it('only single-key commands: every key a store command touches is its own (Cluster-safe)', async () => {
    const mon = await admin.duplicate().monitor();
    const seen: string[][] = [];
    mon.on('monitor', (_t: string, args: string[]) => seen.push(args));
    const s = store();
    const r = lease();
    await s.putLease(r);
    await s.getLease(r.id);
    await s.listLeases({ instance: r.instance });
    await s.listLeases();
    await s.deleteLease(r.id);
    const jt = new JoinTokens(s, JT_KEY);
    await jt.redeem(await jt.create('a', 1000, Date.now()), Date.now());
    await sleep(100);
    mon.disconnect();
    const cmds = seen.map((a) => a[0]!.toLowerCase());
    expect(cmds.length).toBeGreaterThan(8);
    const multiKey = new Set(['mget', 'mset', 'del', 'multi', 'exec', 'rename', 'sunionstore', 'zunionstore']);
    const offenders = seen.filter((a) => multiKey.has(a[0]!.toLowerCase()) && a.length > 2);
    expect(offenders).toEqual([]);
    for (const a of seen.filter((x) => /^(evalsha|eval)$/i.test(x[0]!))) expect(a[2]).toBe('1'); // numkeys
  });
});

describe('RedisStore with corrupt data', () => {
  it('garbage in a lease key → absent, reported via onCorrupt, never a crash', async () => {
    const corrupt: CorruptRecord[] = [];
    const s = store({ onCorrupt: (c) => corrupt.push(c) });
    const good = lease();
    await s.putLease(good);
    await s.putLease(lease({ id: 'lse_bad1' }));
    await s.putLease(lease({ id: 'lse_bad2' }));
    await s.putLease(lease({ id: 'lse_bad3' }));
    await admin.set('leash:lease:lse_bad1', '{not json');
    await admin.set('leash:lease:lse_bad2', JSON.stringify({ id: 'lse_bad2', instance: 42 }));
    await admin.set('leash:lease:lse_bad3', JSON.stringify({ ...good, id: 'lse_other' })); // record under the wrong key
    await admin.set('leash:lease:lse_bad4', '\x00\xff');
    // A time no Date can hold: formatting it threw in `leash leases` and made trace a 500.
    await s.putLease(lease({ id: 'lse_bad5' }));
    await admin.set('leash:lease:lse_bad5', JSON.stringify({ ...good, id: 'lse_bad5', expiresAtMs: 1e20 }));
    for (const id of ['lse_bad1', 'lse_bad2', 'lse_bad3', 'lse_bad4', 'lse_bad5']) expect(await s.getLease(id)).toBeUndefined();
    expect(corrupt).toEqual(['lse_bad1', 'lse_bad2', 'lse_bad3', 'lse_bad4', 'lse_bad5'].map((id) => ({ key: `leash:lease:${id}`, kind: 'lease' })));
    corrupt.length = 0;
    expect((await s.listLeases()).map((r) => r.id)).toEqual([good.id]);
    expect(corrupt.map((c) => c.key).sort()).toEqual(['leash:lease:lse_bad1', 'leash:lease:lse_bad2', 'leash:lease:lse_bad3', 'leash:lease:lse_bad5']);
    expect(await s.deleteLease('lse_bad1')).toBe(false);
  });

  it('a wrong-type key (hash where a string is expected) is a store error, not a crash', async () => {
    const s = store();
    await admin.hset('leash:lease:lse_hash', 'a', 'b');
    await expect(s.getLease('lse_hash')).rejects.toMatchObject({ code: 'LEASH_ERR_STORE', name: 'StoreError' });
  });

  it('garbage in a join token key → not redeemable, reported; a throwing onCorrupt changes nothing', async () => {
    const reported: CorruptRecord[] = [];
    const s = store({
      onCorrupt: (c) => {
        reported.push(c);
        throw new Error('hook failed');
      },
    });
    const token = `leash_jt_${'B'.repeat(43)}`;
    const jt = new JoinTokens(s, JT_KEY);
    await admin.set(`leash:join:${jt.storeKey(token)}`, 'garbage');
    await expect(jt.redeem(token, Date.now())).rejects.toMatchObject({ code: 'LEASH_ERR_JOIN_TOKEN' });
    expect(reported).toEqual([{ key: `leash:join:${jt.storeKey(token)}`, kind: 'join-token' }]);
    expect(await admin.exists(`leash:join:${jt.storeKey(token)}`)).toBe(0);
  });
});

describe('RedisStore never sees a secret', () => {
  it('no command argument and no stored value holds a lease value or a join token', async () => {
    const mon = await admin.duplicate().monitor();
    const args: string[] = [];
    mon.on('monitor', (_t: string, a: string[]) => args.push(...a));
    const s = store();
    const jt = new JoinTokens(s, JT_KEY);
    const secret = 'sk-live-SECRET-0123456789abcdefXYZ';
    const r = lease({ fingerprint: fingerprint(secret), version: fingerprint(secret) });
    await s.putLease(r);
    await s.getLease(r.id);
    await s.listLeases();
    const token = await jt.create('demo-1', 60_000, Date.now());
    const token2 = await jt.create('demo-2', 60_000, Date.now());
    await jt.redeem(token, Date.now());
    await sleep(100);
    mon.disconnect();

    const tokenBody = (t: string) => t.slice('leash_jt_'.length);
    const forbidden = [secret, token, token2, tokenBody(token), tokenBody(token2), tokenBody(token2).slice(0, 16)];
    expect(args.length).toBeGreaterThan(5);
    expect(args.some((a) => a.includes(fingerprint(secret)))).toBe(true); // the fingerprint does go in
    for (const f of forbidden) expect(args.filter((a) => a.includes(f))).toEqual([]);

    const dump: string[] = [];
    for (const key of await admin.keys('*')) {
      dump.push(key);
      const type = await admin.type(key);
      if (type === 'string') dump.push((await admin.get(key))!);
      else if (type === 'zset') dump.push(...(await admin.zrange(key, '0', '-1')));
    }
    expect(dump.length).toBeGreaterThan(4);
    for (const f of forbidden) expect(dump.filter((d) => d.includes(f))).toEqual([]);
  });
});

describe('RedisStore ownership and outages', () => {
  it('a shared client stays open after close(); a client made from a URL is closed with the store', async () => {
    const shared = client();
    const s1 = new RedisStore(shared);
    await s1.putLease(lease());
    await s1.close();
    expect(await shared.ping()).toBe('PONG');

    const s2 = new RedisStore(redis.url);
    const r = lease();
    await s2.putLease(r);
    expect(await s2.getLease(r.id)).toEqual(r);
    await s2.close();
    await expect(s2.getLease(r.id)).rejects.toMatchObject({ code: 'LEASH_ERR_STORE' });
  });

  it('Redis down → StoreError (LEASH_ERR_STORE) with the driver error as cause; back after restart', async () => {
    const c = client({ enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 50 });
    const s = store({}, c);
    await expect.poll(() => c.status, { timeout: 3000 }).toBe('ready');
    await s.putLease(lease());
    await redis.kill();
    await expect.poll(() => c.status, { timeout: 3000 }).not.toBe('ready');
    const err = await s.getLease('x').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LEASH_ERR_STORE', name: 'StoreError' });
    expect((err as Error).message).toMatch(/^lease store \(redis\) could not read a lease: /);
    expect((err as Error).cause).toBeInstanceOf(Error);
    await redis.restart();
    await expect.poll(() => c.status, { timeout: 3000 }).toBe('ready');
    const r = lease();
    await s.putLease(r); // nothing persisted across the restart, but the store works again
    expect(await s.getLease(r.id)).toEqual(r);
    // admin reconnects on its own for the afterEach flush
    await expect.poll(() => admin.status, { timeout: 3000 }).toBe('ready');
  });
});
