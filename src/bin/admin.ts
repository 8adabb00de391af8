import { request } from 'node:https';
import { parseDuration } from '../core/duration.js';
import { UsageError, LeashError } from '../core/errors.js';
import { API, type LeaseRecord } from '../core/protocol.js';
import { readText } from './load.js';

/**
 * Admin commands (DESIGN §3): they reach the authority at --authority / LEASH_AUTHORITY_URL,
 * trust its CA from --ca / LEASH_CA_FILE and authenticate with LEASH_ADMIN_TOKEN.
 */
export interface AdminTarget {
  url: URL;
  caPem: string;
  token: string;
}

export function adminTarget(opts: { authority?: string; ca?: string }, env: NodeJS.ProcessEnv): AdminTarget {
  const url = opts.authority ?? env.LEASH_AUTHORITY_URL;
  const ca = opts.ca ?? env.LEASH_CA_FILE;
  const token = env.LEASH_ADMIN_TOKEN;
  if (!url) throw new UsageError('the authority URL is needed: --authority URL or LEASH_AUTHORITY_URL');
  if (!ca) throw new UsageError("the authority's CA is needed: --ca FILE or LEASH_CA_FILE");
  if (!token) throw new UsageError('LEASH_ADMIN_TOKEN must be set');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--authority: not a URL (got "${url}")`);
  }
  if (parsed.protocol !== 'https:') throw new UsageError('--authority: must be an https URL');
  return { url: parsed, caPem: readText(ca, '--ca'), token };
}

export class AdminError extends LeashError {
  constructor(message: string) {
    super('LEASH_ERR_ADMIN', message);
  }
}

function call(target: AdminTarget, method: string, path: string, body?: unknown): Promise<unknown> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, target.url),
      {
        method,
        ca: target.caPem,
        timeout: 10_000,
        headers: {
          authorization: `Bearer ${target.token}`,
          accept: 'application/json',
          ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new AdminError(`authority answered ${res.statusCode} with a body that is not JSON`));
          }
          if ((res.statusCode ?? 0) >= 300) {
            const e = (parsed as { error?: { code?: string; message?: string } }).error;
            return reject(new AdminError(`authority refused (${res.statusCode} ${e?.code ?? ''}): ${e?.message ?? 'no message'}`));
          }
          resolve(parsed);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => reject(new AdminError(`cannot reach the authority at ${target.url.origin}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    req.end(data);
  });
}

/** `leash token create --identity NAME [--ttl 10m]`: prints the token alone on stdout. */
export async function tokenCreate(target: AdminTarget, identity: string, ttl: string): Promise<string> {
  if (parseDuration(ttl) === undefined) throw new UsageError(`--ttl: must be a duration like "10m" (got "${ttl}")`);
  const answer = (await call(target, 'POST', API.adminTokens, { identity, ttl })) as { token?: unknown };
  if (typeof answer.token !== 'string') throw new AdminError('authority answer has no token');
  return answer.token;
}

/** `leash leases [--instance ID] [--credential NAME] [--json]`. */
export async function listLeases(target: AdminTarget, filter: { instance?: string; credential?: string }, json: boolean): Promise<string> {
  const q = new URLSearchParams();
  if (filter.instance) q.set('instance', filter.instance);
  if (filter.credential) q.set('credential', filter.credential);
  const answer = (await call(target, 'GET', `${API.adminLeases}${q.size ? `?${q}` : ''}`)) as { leases: LeaseRecord[] };
  if (json) return JSON.stringify(answer.leases, null, 2);
  const rows = answer.leases.map((l) => `${l.id}  ${l.credential}  ${l.fingerprint}  expires ${new Date(l.expiresAtMs).toISOString()}  ${l.instance}`);
  return rows.length ? rows.join('\n') : '(no active leases)';
}
