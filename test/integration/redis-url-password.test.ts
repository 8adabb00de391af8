import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisConnector } from '../../src/bus/connect.js';
import { redisTargetFrom } from '../../src/bus/target.js';
import { collectConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

/**
 * `{ url, password }`: a single Redis node whose password comes from a source, the URL
 * naming at most the user (a URL naming a user hands ioredis an empty password that an
 * option does not override, so the connector writes the password into the URL it
 * connects with). Against a real redis-server with an ACL user, every password shape: the
 * characters a URL's userinfo treats specially must reach Redis as written.
 */
let redis: TestRedis;
let admin: Redis;
beforeAll(async () => {
  redis = await startRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});

// Made-up passwords, one per shape that URL encoding could change.
const PASSWORDS = ['plain-made-up', 'p%41ss', 'a@b:c/d?e#f', 'sp ace+plus', 'ünï-çødé', '%', '%%41', "q'\"\\`~!$&()*,;=[]{}|<>^"];

describe('{ url, password } Redis targets', () => {
  it.each(PASSWORDS)('the password %j reaches Redis as written', async (password) => {
    await admin.call('ACL', 'SETUSER', 'leash-pw', 'on', 'resetpass', `>${password}`, '~*', '&*', '+@all');
    const url = `redis://leash-pw@127.0.0.1:${new URL(redis.url).port}`;
    const client = redisConnector(redisTargetFrom({ url, password: { env: 'P' } }, () => password), { lazyConnect: true })();
    try {
      await client.connect();
      expect(await client.call('ACL', 'WHOAMI')).toBe('leash-pw');
    } finally {
      client.disconnect();
    }
    // And a wrong one is refused: the password is used, not ignored.
    const wrong = redisConnector(redisTargetFrom({ url, password: { env: 'P' } }, () => `${password}x`), { lazyConnect: true, retryStrategy: () => null })();
    const errors: string[] = [];
    wrong.on('error', (e: Error) => errors.push(e.message));
    try {
      await expect(wrong.connect()).rejects.toThrow();
      expect(errors.join('\n')).toMatch(/WRONGPASS/);
    } finally {
      wrong.disconnect();
    }
  });

  it('refuses a URL that carries the password itself, and a bare source without a URL', () => {
    const base = { routes: { a: { upstream: 'https://api.example.com', credential: { env: 'K' }, inject: { header: 'x-key' }, allow: ['GET /**'] } } };
    const problems = (redis: unknown) => collectConfig(sidecarSchema, { ...base, revocations: { redis } }).problems;
    expect(problems({ url: 'redis://u@h:6379', password: { env: 'REDIS_PW' } })).toEqual([]);
    expect(problems({ url: 'redis://h:6379' })).toEqual([]);
    const inUrl = problems({ url: 'redis://u:made-up@h:6379', password: { env: 'REDIS_PW' } });
    expect(inUrl.join('\n')).toMatch(/revocations\.redis/);
    expect(inUrl.join('\n')).not.toContain('made-up');
    expect(problems({ password: { env: 'REDIS_PW' } }).length).toBeGreaterThan(0);
    expect(problems({ url: 'http://h', password: { env: 'REDIS_PW' } }).length).toBeGreaterThan(0);
  });
});
