import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { storeKeys } from '../../src/core/protocol.js';
import { createVerifier, type Verifier } from '../../src/verify/index.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { codeOf, ISS, jwksUrl, startKeyedAuthority, type KeyedAuthority } from '../helpers/verify-util.js';

/** The verifier's start-up read of the revocation stream is paged (500 entries a page): every page must be read. */
let redis: TestRedis;
let authority: KeyedAuthority;
let pubClient: Redis;
const verifiers: Verifier[] = [];

beforeAll(async () => {
  redis = await startRedis();
  authority = await startKeyedAuthority();
  pubClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  pubClient.on('error', () => undefined);
});
afterAll(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
  pubClient?.disconnect();
  await authority?.stop();
  await redis?.stop();
});

describe('leash/verify: backfill paging', () => {
  it('applies a revocation that sits on the second page of the stream (1 000 entries: two full pages, then an empty read)', async () => {
    const prefix = 'paged:';
    const pub = new RedisRevocationPublisher(pubClient, 3_600_000, { prefix });
    const early = await authority.lease('agent-1');
    const late = await authority.lease('agent-2');
    await pub.publish({ scope: 'lease', target: early.lease, reason: 'first page', by: 'test' });
    for (let i = 0; i < 998; i++) await pub.publish({ scope: 'lease', target: `filler-${i}`, reason: 'filler', by: 'test' });
    // Entry 1 000: the last of the second full page.
    await pub.publish({ scope: 'lease', target: late.lease, reason: 'last page', by: 'test' });
    const v = createVerifier({ jwksUrl: jwksUrl(authority), ca: authority.caPem, issuer: ISS, audience: 'search-api', revocations: { redis: redis.url, prefix } });
    verifiers.push(v);
    await v.ready();
    expect(v.channelUp).toBe(true);
    expect(await codeOf(v.verify(early.token))).toBe('LEASH_VERIFY_REVOKED');
    expect(await codeOf(v.verify(late.token))).toBe('LEASH_VERIFY_REVOKED');
    expect(await codeOf(v.verify((await authority.lease('agent-3')).token))).toBe('passed');
  }, 20_000);
});

describe('leash/verify: a Redis user that can read the authority', () => {
  it("warns once that the verifier's user can read the authority's own records", async () => {
    const prefix = 'exposed:';
    await pubClient.sadd(storeKeys(prefix).all, 'lease-1');
    const warnings: string[] = [];
    const v = createVerifier({
      jwksUrl: jwksUrl(authority),
      ca: authority.caPem,
      issuer: ISS,
      audience: 'search-api',
      revocations: { redis: redis.url, prefix },
      logger: { warn: (_obj, msg) => warnings.push(msg) },
    });
    verifiers.push(v);
    await v.ready();
    const deadline = Date.now() + 5_000;
    while (!warnings.some((m) => m.includes("can read the authority's own records")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(warnings.filter((m) => m.includes("can read the authority's own records"))).toHaveLength(1);
  }, 20_000);
});

describe('leash/verify: close', () => {
  it('ends the wait for a revocation channel that never came up', async () => {
    const v = createVerifier({ jwksUrl: jwksUrl(authority), ca: authority.caPem, issuer: ISS, audience: 'search-api', revocations: { redis: `redis://127.0.0.1:${await freePort()}`, prefix: 'never:' } });
    let settled = false;
    const ready = v.ready().then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false); // no Redis: not ready
    expect(v.channelUp).toBe(false);
    await v.close();
    await Promise.race([ready, new Promise((r) => setTimeout(r, 2_000))]);
    expect(settled).toBe(true);
    expect(v.channelUp).toBe(false);
  }, 10_000);
});
