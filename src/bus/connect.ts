import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { RedisClient } from './redis.js';
import type { RedisTarget } from './target.js';

/**
 * Redis connections for the revocation bus: single node (URL), Sentinel or Cluster.
 * Reconnects are capped at 500 ms (ioredis' default grows to 5 s: too slow for
 * revocations); commands time out so a half-open command connection cannot hang a
 * catch-up; autoResubscribe is off because the subscriber resubscribes itself.
 */
export type { RedisTarget } from './target.js';

const BASE: RedisOptions = {
  autoResubscribe: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 2_000,
  connectTimeout: 2_000,
  // A connection we drop (missed heartbeat, timed-out catch-up) is presumed dead: don't
  // wait 2 s for a FIN the other side may never acknowledge before reconnecting.
  disconnectTimeout: 200,
  retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 500),
};

export function redisConnector(target: RedisTarget, extra: RedisOptions = {}): () => RedisClient {
  if (typeof target === 'string') return () => new Redis(target, { ...BASE, ...extra });
  if ('url' in target) {
    // Not `new Redis(url, { password })`: a URL naming a user gives ioredis an empty
    // password, which an option does not override. Set in the URL here, never stored.
    const url = target.password === undefined ? target.url : withPassword(target.url, target.password);
    return () => passwordReread(new Redis(url, { ...BASE, ...extra }), target.readPassword);
  }
  if ('sentinels' in target) {
    return () => passwordReread(new Redis({ ...BASE, ...extra, sentinels: target.sentinels, name: target.name, password: target.password }), target.readPassword);
  }
  return () => new Cluster(target.cluster, { redisOptions: { ...BASE, ...extra, password: target.password }, clusterRetryStrategy: (n) => Math.min(50 * 2 ** n, 500) });
}

/**
 * ioredis sends `options.password` at every connection it makes (Redis#_connect): setting it
 * when a reconnection is scheduled ('reconnecting') makes the next AUTH use the password the
 * file holds now. A connection made with a password removed from the ACL user got WRONGPASS
 * forever: a Redis password could be rotated only by restarting every process. A source that
 * cannot be read now (mid-swap) or is empty keeps the password in use.
 */
function passwordReread(client: Redis, read: (() => string) | undefined): Redis {
  if (!read) return client;
  client.on('reconnecting', () => {
    try {
      const password = read();
      if (password) client.options.password = password;
    } catch {
      // keep the one in use; the next reconnection reads again
    }
  });
  return client;
}

/** `url` with `password` as its userinfo's password (percent-encoded: ioredis decodes it). */
export function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = encodeURIComponent(password);
  return u.href;
}
