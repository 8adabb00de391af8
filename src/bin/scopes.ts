import type { RedisTarget } from '../bus/connect.js';
import type { SidecarConfig } from '../config/sidecar.js';
import { parseDuration } from '../core/duration.js';
import { LeashError, UsageError } from '../core/errors.js';
import { AUDIT_VERSION, auditKey, DEFAULT_KEY_PREFIX, parseAuditEntry, type AuditEntry } from '../core/protocol.js';
import { analyzeScopes, type RouteAllow, type ScopesReport } from '../telemetry/scopes.js';
import { loadSidecarConfig, resolveRedisTarget } from './load.js';
import { redactUrl } from '../config/issues.js';
import { jsonText, printable } from './terminal.js';

/**
 * `leash scopes [--since 7d] [--json] [--config FILE] [--redis URL]`: reads the shared audit
 * stream `<prefix>audit` directly (read-only: XRANGE) and reports what each route's
 * credential was used for against what its allow list permits (telemetry/scopes.ts).
 */
export class ScopesError extends LeashError {
  constructor(message: string) {
    super('LEASH_ERR_SCOPES', message);
  }
}

export interface ScopesOptions {
  since?: string;
  json?: boolean;
  config?: string;
  redis?: string;
  prefix?: string;
}

/** Entries read per XRANGE call, and at most overall (the stream's default cap is 100 000). */
const PAGE = 1_000;
const MAX_ENTRIES = 1_000_000;

const routesOf = (config: SidecarConfig): Record<string, RouteAllow> => {
  const out: Record<string, RouteAllow> = {};
  for (const [name, r] of Object.entries(config.routes)) {
    const c = r.credential;
    out[name] = { credential: typeof c === 'string' ? c : 'env' in c ? `env:${c.env}` : `file:${c.file}`, allow: r.allow };
  }
  return out;
};

/** Every entry of the stream from `sinceMs` on, oldest first, a page at a time. */
export async function readStream(target: RedisTarget, key: string, sinceMs: number): Promise<AuditEntry[]> {
  const { redisConnector } = await import('../bus/connect.js');
  const client = redisConnector(target, { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: false })() as unknown as {
    xrange(key: string, start: string, end: string, count: 'COUNT', n: number): Promise<Array<[string, string[]]>>;
    quit(): Promise<unknown>;
    disconnect(): void;
    on(event: 'error', fn: (err: Error) => void): void;
  };
  let lastError: Error | undefined;
  client.on('error', (err) => (lastError = err));
  const out: AuditEntry[] = [];
  try {
    let start = `${Math.max(0, Math.floor(sinceMs))}-0`;
    for (;;) {
      const page = await client.xrange(key, start, '+', 'COUNT', PAGE);
      for (const [id, flat] of page) out.push(parseAuditEntry(id, flat));
      if (page.length < PAGE || out.length >= MAX_ENTRIES) break;
      start = `(${page[page.length - 1]![0]}`;
    }
  } catch (err) {
    const why = (lastError as NodeJS.ErrnoException | undefined)?.code ?? (err as Error).message;
    throw new ScopesError(`cannot read the audit stream ${key}: ${why}`);
  } finally {
    client.disconnect();
  }
  return out;
}

export function formatScopes(report: ScopesReport, sinceText: string): string {
  const lines: string[] = [];
  for (const r of report.routes) {
    lines.push(`route ${r.route}  credential ${r.credential}  ${r.requests} request${r.requests === 1 ? '' : 's'} (since ${sinceText})${r.configured === false ? '  [not in --config]' : ''}`);
    for (const o of r.operations) {
      const statuses = Object.entries(o.statuses)
        .sort()
        .map(([s, n]) => `${s}=${n}`)
        .join(' ');
      lines.push(`  ${String(o.count).padStart(7)}  ${o.method} ${o.path}  ${statuses}${o.rule ? `  (rule "${o.rule}")` : ''}`);
    }
    if (r.rulesNeverMatched?.length) lines.push(`  rules never matched: ${r.rulesNeverMatched.map((t) => `"${t}"`).join(', ')}`);
    if (r.narrowest.length) lines.push(`  narrowest allow list covering this use:`, ...r.narrowest.map((t) => `    - "${t}"`));
    if (r.requests === 0) lines.push('  never used: consider removing the route or its credential');
  }
  if (report.routes.length === 0) lines.push(`no usage in the audit stream since ${sinceText}`);
  for (const c of report.cloned) {
    lines.push(`ANOMALY cloned credential: lease ${c.lease} (${c.credential ?? '?'}, ${c.fingerprint ?? '?'}) used by ${c.instances.length} instances: ${c.instances.join(', ')}`);
  }
  const { denied, overflow, noRoute, newer } = report.skipped;
  if (denied + overflow + noRoute > 0) lines.push(`not counted: ${denied} refused, ${noRoute} without a route, ${overflow} in overflow "(other)" entries`);
  if (newer > 0) lines.push(`not read: ${newer} audit entr${newer === 1 ? 'y' : 'ies'} of a newer schema than this leash reads (v${AUDIT_VERSION}): run leash scopes of that version (docs/audit.md)`);
  // Paths, routes and instances come from the audit stream (paths as agents asked for them).
  return lines.map(printable).join('\n');
}

/** Exit 0; 1 on a cloned credential (an anomaly to act on), like `leash check` on a problem. */
export async function runScopes(o: ScopesOptions, env: NodeJS.ProcessEnv, out: (line: string) => void): Promise<number> {
  const sinceText = o.since ?? '7d';
  const sinceMs = parseDuration(sinceText);
  if (sinceMs === undefined) throw new UsageError(`--since: must be a duration like "7d", "24h" or "30m" (got "${sinceText.slice(0, 40)}")`);
  const config = o.config === undefined ? undefined : loadSidecarConfig(o.config, env);
  let target: RedisTarget | undefined;
  if (o.redis !== undefined) {
    if (!/^rediss?:\/\//.test(o.redis)) throw new UsageError(`--redis: must be a redis:// or rediss:// URL (got "${redactUrl(o.redis)}")`);
    target = o.redis;
  } else if (config?.audit.redis) target = resolveRedisTarget(config.audit.redis, env, 'audit.redis');
  else if (config?.revocations) target = resolveRedisTarget(config.revocations.redis, env, 'revocations.redis');
  else if (env.LEASH_REDIS_URL) target = env.LEASH_REDIS_URL;
  if (target === undefined) throw new UsageError('leash scopes needs the Redis holding the audit stream: --redis URL, --config FILE (audit.redis, else revocations.redis) or LEASH_REDIS_URL');
  const prefix = o.prefix ?? config?.audit.prefix ?? config?.revocations?.prefix ?? DEFAULT_KEY_PREFIX;
  const entries = await readStream(target, auditKey(prefix), Date.now() - sinceMs);
  const report = analyzeScopes(entries, config ? routesOf(config) : undefined);
  out(o.json ? jsonText({ since: sinceText, ...report }) : formatScopes(report, sinceText));
  return report.cloned.length > 0 ? 1 : 0;
}
