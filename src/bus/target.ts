import type { RedisTargetConfig, SecretSource } from '../config/common.js';

/**
 * Where a Redis is, resolved: a URL, Sentinel or Cluster, with its password read. The
 * config form (`RedisTargetConfig`) names the password's source instead; `redisTargetFrom`
 * is the one place the two meet, and each caller says how a source is read (the entry
 * points read files and the environment; a Sidecar built by an embedder reads only the
 * environment it was given). No runtime imports: loading this loads no Redis client.
 */
export type RedisTarget =
  | string
  | { url: string; password?: string }
  | { sentinels: { host: string; port: number }[]; name: string; password?: string }
  | { cluster: { host: string; port: number }[]; password?: string };

export function redisTargetFrom(target: RedisTargetConfig, password: (source: SecretSource) => string): RedisTarget {
  if (typeof target === 'string') return target;
  const pw = target.password === undefined ? undefined : password(target.password);
  if ('url' in target) return { url: target.url, password: pw };
  return 'sentinels' in target ? { sentinels: target.sentinels, name: target.name, password: pw } : { cluster: target.cluster, password: pw };
}
