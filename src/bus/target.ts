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
  | { url: string; password?: string; readPassword?: () => string }
  | { sentinels: { host: string; port: number }[]; name: string; password?: string; readPassword?: () => string }
  | { cluster: { host: string; port: number }[]; password?: string };

/**
 * `reread`: how to read a password source again later (a `{ file }` a mounted Secret
 * rotates); given, a single-node or Sentinel connection reads it again at every
 * reconnection (bus/connect.ts), so a rotated Redis password needs no restart.
 */
export function redisTargetFrom(target: RedisTargetConfig, password: (source: SecretSource) => string, reread?: (source: SecretSource) => (() => string) | undefined): RedisTarget {
  if (typeof target === 'string') return target;
  const pw = target.password === undefined ? undefined : password(target.password);
  const readPassword = target.password === undefined ? undefined : reread?.(target.password);
  const again = readPassword ? { readPassword } : {};
  if ('url' in target) return { url: target.url, password: pw, ...again };
  return 'sentinels' in target ? { sentinels: target.sentinels, name: target.name, password: pw, ...again } : { cluster: target.cluster, password: pw };
}
