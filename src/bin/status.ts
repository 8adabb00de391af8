import { hostPort } from '../config/common.js';
import { readDocument } from '../config/load.js';
import { LeashError, UsageError } from '../core/errors.js';
import { HttpJsonError, httpJson, type HttpJsonResponse } from '../core/http-json.js';
import { readText } from './load.js';
import { jsonText, printable } from './terminal.js';

/**
 * `leash status [--admin ADDR] [--config FILE] [--json]`: the sidecar's admin `/status`
 * (DESIGN §3) as a table. The admin listener serves no secrets, so this needs no token;
 * what it shows is what /status shows: sources, lease ids and fingerprints, never a value.
 */
export const DEFAULT_ADMIN = '127.0.0.1:9090';
const MAX_BODY = 1 << 20;

export class StatusError extends LeashError {
  constructor(message: string) {
    super('LEASH_ERR_STATUS', message);
  }
}

/**
 * Where the admin listener is: --admin, else the `admin` of --config FILE (a sidecar
 * config, or a dev config's `sidecar`), else LEASH_ADMIN (what `leash dev` listens on),
 * else the default. A wildcard listen address is reached on loopback.
 */
export function adminAddress(opts: { admin?: string; config?: string }, env: NodeJS.ProcessEnv): { host: string; port: number; text: string } {
  let text = opts.admin;
  let from = '--admin';
  if (text === undefined && opts.config !== undefined) {
    const doc = readDocument(readText(opts.config, '--config'), env, opts.config);
    const section = doc.sidecar !== undefined && doc.authority !== undefined ? (doc.sidecar as Record<string, unknown>) : doc;
    const configured = section?.admin;
    if (configured !== undefined && typeof configured !== 'string') throw new UsageError(`${opts.config}: admin must be "host:port"`);
    text = configured ?? DEFAULT_ADMIN;
    from = `${opts.config}: admin`;
  }
  if (text === undefined && env.LEASH_ADMIN) {
    text = env.LEASH_ADMIN;
    from = 'LEASH_ADMIN';
  }
  text ??= DEFAULT_ADMIN;
  const bare = text.replace(/^http:\/\//, '').replace(/\/+$/, '');
  const parsed = hostPort.safeParse(bare);
  if (!parsed.success || parsed.data.port === 0) throw new UsageError(`${from}: must be "host:port", e.g. "${DEFAULT_ADMIN}" (got "${bare.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)}")`);
  const host = parsed.data.host === '0.0.0.0' ? '127.0.0.1' : parsed.data.host === '::' ? '::1' : parsed.data.host;
  return { host, port: parsed.data.port, text: `${host.includes(':') ? `[${host}]` : host}:${parsed.data.port}` };
}

export async function fetchStatus(addr: { host: string; port: number; text: string }, timeoutMs = 5_000): Promise<unknown> {
  let res: HttpJsonResponse;
  try {
    res = await httpJson({ method: 'GET', url: new URL('/status', `http://${addr.text}`), timeoutMs, maxBodyBytes: MAX_BODY });
  } catch (err) {
    const e = err instanceof HttpJsonError ? err : undefined;
    const why = e?.failure === 'timeout' ? 'timed out' : e?.failure === 'too_large' ? 'answer over 1 MiB' : (e?.errno ?? 'error');
    throw new StatusError(`cannot reach the sidecar's admin listener at ${addr.text}: ${why} (is leash running? --admin ADDR)`);
  }
  if (res.status !== 200) throw new StatusError(`the admin listener at ${addr.text} answered ${res.status} to /status (is it a leash sidecar?)`);
  try {
    return res.json();
  } catch {
    throw new StatusError(`the admin listener at ${addr.text} answered /status with a body that is not JSON (is it a leash sidecar?)`);
  }
}

/** A cell as the terminal will show it: no control characters, bounded. */
const cell = (v: unknown): string => {
  if (v === null || v === undefined) return '-';
  const s = printable(typeof v === 'string' ? v : typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v));
  return s.length > 80 ? `${s.slice(0, 79)}…` : s;
};

export function formatSeconds(v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '-';
  const s = Math.max(0, Math.round(v));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** /status as a table: a line about the instance, then one row per route. Unknown fields are left out. */
export function formatStatus(status: unknown): string {
  const s = (status ?? {}) as {
    instance?: { id?: unknown; identity?: unknown };
    shuttingDown?: unknown;
    revocations?: { channel?: unknown; downSeconds?: unknown } | null;
    routes?: Record<string, Record<string, unknown>>;
  };
  const down = s.revocations?.channel === 'down' ? `   REVOCATIONS DOWN${typeof s.revocations.downSeconds === 'number' ? ` ${formatSeconds(s.revocations.downSeconds)}` : ''}` : '';
  const lines = [`instance ${cell(s.instance?.id)}   identity ${cell(s.instance?.identity ?? '(none: static credentials)')}${s.shuttingDown === true ? '   SHUTTING DOWN' : ''}${down}`];
  const header = ['ROUTE', 'AVAILABLE', 'CREDENTIAL', 'LEASE', 'FINGERPRINT', 'AGE', 'TTL LEFT', 'UPSTREAM'];
  const rows = Object.entries(s.routes ?? {}).map(([name, r]) => [
    cell(name),
    cell(r?.available === true),
    cell(r?.credential),
    cell(r?.lease),
    cell(r?.fingerprint),
    formatSeconds(r?.ageSeconds),
    formatSeconds(r?.ttlRemainingSeconds),
    cell(r?.upstream),
  ]);
  if (rows.length === 0) return [...lines, '(no routes)'].join('\n');
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [...lines, line(header), ...rows.map(line)].join('\n');
}

export async function runStatus(opts: { admin?: string; config?: string; json?: boolean }, env: NodeJS.ProcessEnv, out: (line: string) => void): Promise<number> {
  const status = await fetchStatus(adminAddress(opts, env));
  out(opts.json ? jsonText(status) : formatStatus(status));
  return 0;
}
