import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisClient } from '../bus/redis.js';

/**
 * Does the authority's Redis keep anything across a restart? Without persistence a restart
 * loses the revocation stream, the lease records and the revoked-identity marks at once
 * (docs/revocation.md: what survives, what the epoch detects). Checked once at start —
 * at the first connection — with CONFIG GET, which managed Redis services often disable:
 * then the log says it could not be checked.
 */
export type Persistence =
  | { kind: 'aof' }
  | { kind: 'rdb'; save: string }
  | { kind: 'none' }
  | { kind: 'unknown'; why: string };

/** Pure: the verdict from `CONFIG GET appendonly` and `CONFIG GET save` (undefined: not answered). */
export function persistenceOf(appendonly: string | undefined, save: string | undefined): Persistence {
  if (appendonly === undefined || save === undefined) return { kind: 'unknown', why: 'CONFIG GET gave no answer' };
  if (appendonly.toLowerCase() === 'yes') return { kind: 'aof' };
  if (save.trim() !== '') return { kind: 'rdb', save: save.trim() };
  return { kind: 'none' };
}

/** `CONFIG GET name` as a value; undefined when the reply has no such entry. */
async function configGet(client: Redis, name: string): Promise<string | undefined> {
  const reply = (await client.config('GET', name)) as unknown;
  if (Array.isArray(reply)) {
    const i = reply.indexOf(name);
    return i >= 0 && typeof reply[i + 1] === 'string' ? (reply[i + 1] as string) : undefined;
  }
  if (reply && typeof reply === 'object') {
    const v = (reply as Record<string, unknown>)[name];
    return typeof v === 'string' ? v : undefined;
  }
  return undefined;
}

/** Each master of a Cluster (each may differ), or the one server. */
function servers(client: RedisClient): Redis[] {
  return client.isCluster ? (client as unknown as { nodes(role: 'master'): Redis[] }).nodes('master') : [client as Redis];
}

export async function checkPersistence(client: RedisClient): Promise<Persistence> {
  const nodes = servers(client);
  if (nodes.length === 0) return { kind: 'unknown', why: 'no Redis node known yet' };
  let worst: Persistence | undefined;
  for (const node of nodes) {
    let p: Persistence;
    try {
      p = persistenceOf(await configGet(node, 'appendonly'), await configGet(node, 'save'));
    } catch (err) {
      // NOPERM / unknown command (renamed or disabled on managed Redis), or a timeout.
      p = { kind: 'unknown', why: String((err as Error)?.message ?? err).replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, 120) };
    }
    if (!worst || rank(p) > rank(worst)) worst = p;
  }
  return worst!;
}

const rank = (p: Persistence) => ({ aof: 0, rdb: 1, unknown: 2, none: 3 })[p.kind];

/** The start-time log line for a verdict: warn when nothing is kept or it cannot be told. */
export function logPersistence(logger: Logger, p: Persistence): void {
  switch (p.kind) {
    case 'none':
      logger.warn(
        { redisPersistence: 'none' },
        'redis keeps nothing across a restart (appendonly no, save ""): a restart loses revocations, leases and revoked-instance marks; sidecars and verifiers detect it (stream epoch) and reconcile, but run Redis with appendonly yes (docs/revocation.md)',
      );
      return;
    case 'unknown':
      logger.warn({ redisPersistence: 'unknown', why: p.why }, 'could not check whether redis persists its data (CONFIG GET refused or unavailable): without persistence a restart loses revocations (docs/revocation.md)');
      return;
    case 'rdb':
      logger.info({ redisPersistence: 'rdb', save: p.save }, 'redis persists by RDB snapshots only: a crash loses what was written since the last one; appendonly yes is recommended (docs/revocation.md)');
      return;
    case 'aof':
      logger.info({ redisPersistence: 'aof' }, 'redis persists with AOF');
  }
}
