import { Agent, request } from 'node:https';
import { Redis } from 'ioredis';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { ADMIN_TOKEN } from './authority.js';
import { api, bootstrap, type ApiAnswer, type ClientIdentity } from './replicas.js';
import { sleep } from './wait.js';

/**
 * Helpers for the authority's revocation tests: an instance that keeps one TLS connection
 * open (so the server's per-connection identity cache is exercised), the admin revoke
 * call, and readers of the Redis stream and channel `<prefix>revocations`.
 */
export interface Instance {
  identity: string;
  client: ClientIdentity;
  /** Lease a credential over this instance's kept-alive connection. */
  lease(credential: string): Promise<ApiAnswer<{ lease?: string; value?: string; error?: { code: string; message: string } }>>;
  renew(): Promise<ApiAnswer<{ certificate?: string; error?: { code: string; message: string } }>>;
  release(lease: string): Promise<ApiAnswer<{ error?: { code: string; message: string } }>>;
  /** Local ports of the TLS connections this instance opened (one while kept alive). */
  sockets: Set<number>;
  close(): void;
}

/** One JSON call over `agent` with the instance's certificate. */
function call<T>(baseUrl: string, caPem: string, agent: Agent, client: ClientIdentity, sockets: Set<number>, method: string, path: string, body?: unknown): Promise<ApiAnswer<T>> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, baseUrl),
      {
        method,
        agent,
        ca: caPem,
        cert: client.certPem,
        key: client.keyPem,
        headers: { accept: 'application/json', ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
      },
      (res) => {
        if (res.socket.localPort) sockets.add(res.socket.localPort);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') as T }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** Bootstrap with a join token at `baseUrl`; later calls reuse one kept-alive connection. */
export async function joinInstance(baseUrl: string, caPem: string, joinToken: string): Promise<Instance> {
  const boot = await bootstrap(baseUrl, caPem, joinToken);
  if (boot.status !== 200) throw new Error(`bootstrap answered ${boot.status}: ${JSON.stringify(boot.body)}`);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<number>();
  const client = boot.client;
  const c = <T>(method: string, path: string, body?: unknown) => call<T>(baseUrl, caPem, agent, client, sockets, method, path, body);
  return {
    identity: boot.body.identity!,
    client,
    sockets,
    lease: (credential) => c('POST', '/v1/leases', { credential }),
    renew: () => c('POST', '/v1/identity/renew', { csr: createCsr(createIdentityKey(), 'leash-test') }),
    release: (lease) => c('DELETE', `/v1/leases/${encodeURIComponent(lease)}`),
    close: () => agent.destroy(),
  };
}

export interface RevokeAnswer {
  revocation?: { id: string; scope: string; target: string; reason: string; at: string; by: string };
  leases?: number;
  warning?: string;
  error?: { code: string; message: string };
}

/** POST /v1/admin/revoke with the admin token (and `x-leash-actor` when `actor`). */
export function adminRevoke(baseUrl: string, caPem: string, body: unknown, actor?: string, token = ADMIN_TOKEN): Promise<ApiAnswer<RevokeAnswer>> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL('/v1/admin/revoke', baseUrl),
      {
        method: 'POST',
        ca: caPem,
        agent: false,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
          ...(actor ? { 'x-leash-actor': actor } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as RevokeAnswer }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export { api };

export interface StreamEntry {
  id: string;
  fields: Record<string, string>;
}

/** Every entry of a stream, fields as an object. */
export async function readStream(client: Redis, key: string): Promise<StreamEntry[]> {
  const raw = (await client.xrange(key, '-', '+')) as [string, string[]][];
  return raw.map(([id, flat]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    return { id, fields };
  });
}

/** Collects the messages of a pub/sub channel on its own connection. */
export interface ChannelTap {
  messages: Array<Record<string, unknown>>;
  /** Resolves once `n` messages have arrived (or rejects after `ms`). */
  count(n: number, ms?: number): Promise<Array<Record<string, unknown>>>;
  close(): void;
}

export async function tapChannel(url: string, channel: string): Promise<ChannelTap> {
  const sub = new Redis(url);
  const messages: Array<Record<string, unknown>> = [];
  sub.on('message', (_c: string, m: string) => messages.push(JSON.parse(m) as Record<string, unknown>));
  await sub.subscribe(channel);
  return {
    messages,
    async count(n, ms = 2_000) {
      const deadline = Date.now() + ms;
      while (messages.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} messages on ${channel}, got ${messages.length}`);
        await sleep(10);
      }
      return messages;
    },
    close: () => sub.disconnect(),
  };
}

/** Every key and every string/stream/zset value under `prefix`, as text (to search for secrets). */
export async function dumpRedis(client: Redis, pattern = '*'): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      parts.push(key);
      const type = await client.type(key);
      if (type === 'string') parts.push((await client.get(key)) ?? '');
      else if (type === 'stream') parts.push(JSON.stringify(await client.xrange(key, '-', '+')));
      else if (type === 'zset') parts.push(JSON.stringify(await client.zrange(key, 0, '-1', 'WITHSCORES')));
      else if (type === 'hash') parts.push(JSON.stringify(await client.hgetall(key)));
    }
  } while (cursor !== '0');
  return parts.join('\n');
}
