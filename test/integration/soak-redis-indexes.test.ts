import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../../src/authority/leases/redis.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { redisTimeMs, type LeaseRecord } from '../../src/core/protocol.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A month of lease churn in a second: the lease indexes (`leases:all`,
 * `leases:by-credential:<name>`, `leases:by-instance:<id>`) are sorted sets whose key
 * expires with its highest score, and a fleet that keeps leasing keeps pushing that score
 * forward — so the key never expires and, before the fix, every lease id ever issued stayed
 * in it (expired entries left only when someone *listed* that index: a metrics scrape for
 * `all`, an admin listing or revocation otherwise; `by-credential` practically never).
 */
let redis: TestRedis;
let admin: Redis;
let n = 0;

beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

const LONG_LIVED = 'spiffe://leash.local/join/long-lived';
const lease = (instance: string, ttlMs: number): LeaseRecord => ({
  id: `lse_soak_${++n}`,
  instance,
  credential: 'openai',
  fingerprint: fingerprint(`v${n}`),
  version: 'v1',
  issuedAtMs: Date.now(),
  expiresAtMs: Date.now() + ttlMs,
});

describe('lease indexes under churn', () => {
  it('expired ids leave the indexes as new leases come in, without anyone listing them', { timeout: 15_000 }, async () => {
    // The store's clock stands still during round one (so however slowly the 600 writes go,
    // none of them sweeps another: the count before is exact), then follows the real one.
    const start = Date.now();
    let frozen = true;
    const store = new RedisStore(redis.url, { prefix: 'soak:', clock: { wallMs: () => (frozen ? start : Date.now()) } });
    const k = store.keys();
    try {
      // Round one: a long-lived instance renews 300 times, 300 short-lived instances lease once.
      // One lease outlives the round, as some lease always does in a fleet: the index keys
      // then never reach their expiry (with no live lease left they would simply expire).
      const anchor = lease(LONG_LIVED, 60_000);
      const first: LeaseRecord[] = [anchor];
      for (let i = 0; i < 300; i++) first.push(lease(LONG_LIVED, 300), lease(`spiffe://leash.local/join/pod-${i}`, 300));
      for (let i = 0; i < first.length; i += 50) await Promise.all(first.slice(i, i + 50).map((r) => store.putLease(r)));
      expect(await admin.zcard(k.all)).toBe(601);
      const lastEnd = Math.max(...first.slice(1).map((r) => r.expiresAtMs));
      // Time passes (by Redis' clock, which expires the records): every lease of round one is over.
      await waitFor(async () => redisTimeMs(await admin.time()) > lastEnd + 1, { message: 'round one to expire' });

      // Round two: the long-lived instance keeps renewing; nobody lists anything.
      frozen = false;
      for (let i = 0; i < 10; i++) await store.putLease(lease(LONG_LIVED, 60_000));

      // Bounded by the live leases, not by the history.
      expect(await admin.zcard(k.all)).toBe(11);
      expect(await admin.zcard(k.byCredential('openai'))).toBe(11);
      expect(await admin.zcard(k.byInstance(LONG_LIVED))).toBe(11);
      // The short-lived instances' own indexes expired with their last lease.
      expect(await admin.exists(k.byInstance('spiffe://leash.local/join/pod-0'))).toBe(0);
      // What Redis holds under the prefix: the 11 records and 3 indexes, nothing else.
      expect((await admin.keys('soak:*')).length).toBe(14);
      // Listing still sees exactly the live ones.
      expect((await store.listLeases({ credential: 'openai' })).length).toBe(11);
    } finally {
      await store.close();
    }
  });

  it('a large backlog is worked off a bounded slice per write, oldest first, never a live entry', { timeout: 15_000 }, async () => {
    const store = new RedisStore(redis.url, { prefix: 'backlog:' });
    const k = store.keys();
    try {
      // 1,000 expired ids left by a version without the cleanup (written straight into the index).
      const now = redisTimeMs(await admin.time());
      const stale: (string | number)[] = [];
      for (let i = 0; i < 1000; i++) stale.push(now - 10_000 + i, `lse_old_${i}`);
      await admin.zadd(k.all, ...stale);
      await admin.pexpireat(k.all, now + 60_000);
      const live = lease(LONG_LIVED, 60_000);
      await store.putLease(live);
      const left = await admin.zcard(k.all);
      // One write removes a bounded slice (not the whole backlog in one blocking call)…
      expect(left).toBeGreaterThan(1);
      expect(left).toBeLessThan(1001);
      // …and each later write another, until only live entries remain.
      for (let i = 0; i < 20 && (await admin.zcard(k.all)) > 21; i++) await store.putLease(lease(LONG_LIVED, 60_000));
      const members = await admin.zrange(k.all, '0', '-1');
      expect(members.some((m) => m.startsWith('lse_old_'))).toBe(false);
      expect(members).toContain(live.id);
    } finally {
      await store.close();
    }
  });
});
