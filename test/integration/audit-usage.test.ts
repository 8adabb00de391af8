import { execFile } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { CLI, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Per-request use in the audit stream as `usage` summaries (docs/audit.md), with a real
 * redis-server, an in-process authority and a spawned `leash sidecar`; `leash trace` as a
 * process. (Every secret here is a fake test value.)
 */
const SECRET = 'sk-usage-summary-static-value-0123456789';
let redis: TestRedis | undefined;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Spawned | undefined;
let client: Redis | undefined;

afterEach(async () => {
  sidecar?.child.kill('SIGKILL');
  sidecar = undefined;
  client?.disconnect();
  client = undefined;
  await upstream?.close();
  await authority?.stop();
  await redis?.stop();
  upstream = authority = redis = undefined;
});

type Entry = Record<string, string> & { id: string };

async function stream(): Promise<Entry[]> {
  const raw = (await client!.xrange('leash:audit', '-', '+')) as Array<[string, string[]]>;
  return raw.map(([id, f]) => {
    const e: Entry = { id };
    for (let i = 0; i + 1 < f.length; i += 2) e[f[i]!] = f[i + 1]!;
    return e;
  });
}

async function setup(audit: Record<string, unknown>, oldEntries = 0): Promise<{ proxy: string; caFile: string }> {
  redis = await startRedis();
  client = new Redis(redis.url);
  // Small stream nodes, so `~` trimming (whole nodes only) is visible at test sizes.
  await client.config('SET', 'stream-node-max-entries', '10');
  // Entries from 1970, before any writer starts (XADD ids only grow): only an age trim removes them.
  for (let i = 1; i <= oldEntries; i++) await client.xadd('leash:audit', `${i}-0`, 'event', 'old', 'at', 'x');
  authority = await startAuthority(
    {
      redis: redis.url,
      credentials: { api: { kind: 'static', source: { env: 'API' }, ttl: '10m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['api'] }],
    },
    { env: { API: SECRET } },
  );
  upstream = await startUpstream((_req, res) => res.end('ok'));
  const caFile = writeTemp('ca.pem', authority.caPem);
  const token = await authority.token('agent-1');
  const config = writeTemp(
    'sidecar.json',
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      instance: { id: 'sc-usage' },
      authority: { url: authority.url, caFile, bootstrap: { joinToken: { env: 'JT' } } },
      revocations: { redis: redis.url },
      audit,
      routes: { api: { upstream: upstream.url, credential: 'api', inject: { header: 'x-api-key' }, allow: ['GET /**'] } },
    }),
  );
  sidecar = spawnLeash(['sidecar', '--config', config], { JT: token });
  const started = await sidecar.waitFor((l) => l.msg === 'leash sidecar started');
  await sidecar.waitFor((l) => l.event === 'credential.acquired');
  return { proxy: `http://127.0.0.1:${String(started.listen).split(':').pop()}`, caFile };
}

async function requests(proxy: string, n: number, path: string, method = 'GET'): Promise<void> {
  for (let i = 0; i < n; i++) await (await fetch(`${proxy}/api${path}`, { method })).arrayBuffer();
}

/** Polls until `pred` holds (bounded). */
async function until<T>(f: () => Promise<T>, pred: (v: T) => boolean, ms = 5_000): Promise<T> {
  let v!: T;
  await waitFor(async () => pred((v = await f())), { timeoutMs: ms, intervalMs: 25 }).catch(() => undefined);
  return v;
}

function leash(args: string[], caFile: string): Promise<{ stdout: string; code: number | null }> {
  const env = { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: authority!.url, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN_TOKEN };
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env }, (_e, stdout) => resolve({ stdout, code: child.exitCode }));
  });
}

const usageKey = (e: Entry) => [e.lease, e.fingerprint, e.route, e.method, e.path, e.status, e.denied].join('|');

describe('usage summaries in leash:audit', () => {
  it('N requests → one entry per key, written by the flush at shutdown; MINID trims old entries; leash trace shows the operations', async () => {
    const { proxy, caFile } = await setup({ flushInterval: '1h', maxAge: '1m', maxLen: 1000 }, 100);
    const sc = sidecar!;
    await requests(proxy, 30, '/v1/models');
    await requests(proxy, 5, `/v1/${'x'.repeat(400)}`);
    await requests(proxy, 3, '/v1/files', 'POST'); // refused by the allow list: usage with `denied`
    await sc.waitFor(() => sc.lines.filter((l) => l.includes('"event":"request')).length >= 38);
    // Nothing per request: no usage entry before the flush.
    expect((await stream()).filter((e) => e.event === 'usage')).toEqual([]);

    sidecar!.child.kill('SIGTERM');
    expect(await sidecar!.exit).toBe(0);
    const entries = await stream();
    const usage = entries.filter((e) => e.event === 'usage');
    expect(usage).toHaveLength(3);
    expect(new Set(usage.map((e) => e.at)).size).toBe(1); // one flush, one MULTI
    const byPath = Object.fromEntries(usage.map((e) => [e.path, e]));
    expect(byPath['/v1/models']).toMatchObject({ v: '1', instance: 'sc-usage', route: 'api', credential: 'lease:api', method: 'GET', status: '2xx', count: '30' });
    expect(byPath['/v1/models']!.lease).toMatch(/\S/);
    expect(byPath['/v1/models']!.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(byPath['/v1/models']!.first <= byPath['/v1/models']!.last).toBe(true);
    expect(byPath['/v1/files']).toMatchObject({ method: 'POST', status: '4xx', denied: 'leash_denied', count: '3' });
    const long = usage.find((e) => e.path?.startsWith('/v1/xxx'))!;
    expect(long.count).toBe('5');
    expect(long.path!.length).toBeLessThanOrEqual(256);
    // Age retention: the 1970 entries are gone (the stream is far below maxLen).
    expect(entries.filter((e) => e.event === 'old')).toEqual([]);
    expect(entries.length).toBeLessThan(100);
    // Schema version on every entry, and no secret anywhere in the stream.
    for (const e of entries) expect(e.v).toBe('1');
    expect(JSON.stringify(entries)).not.toContain(SECRET);
    // Every audit line the sidecar and the authority logged carries "v":1.
    const auditLines = [...sidecar!.lines, ...authority!.logs.lines].filter((l) => l.includes('"audit":true')).map((l) => JSON.parse(l) as { v?: number });
    expect(auditLines.length).toBeGreaterThan(40);
    for (const l of auditLines) expect(l.v).toBe(1);

    // leash trace, as a process: who held it, and what it did (the value is fingerprinted locally).
    const lease = byPath['/v1/models']!.lease!;
    // Fields anyone with XADD (every sidecar with audit.redis) can write: printed, never as control characters.
    await client!.xadd('leash:audit', '*', 'v', '1', 'event', 'lease.revoked', 'lease', lease, 'fingerprint', byPath['/v1/models']!.fingerprint!, 'identity', 'spiffe://x\x1b[2J\x1b[H', 'instance', 'i\x1b[8m', 'reason', '\x1b]0;PWNED\x07\x1b[8m');
    const table = await until(
      () => leash(['trace', SECRET], caFile),
      (r) => r.stdout.includes('released'),
    );
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('OPERATIONS');
    expect(table.stdout).toMatch(/api\s+GET\s+\/v1\/models\s+2xx\s+30\s/);
    // The refused POSTs carried no credential (refused before injection): not operations of this value.
    expect(table.stdout).not.toContain('/v1/files');
    expect(table.stdout).toContain(lease);
    expect(table.stdout).toContain('spiffe://leash.local/join/agent-1');
    expect(table.stdout).toContain('sc-usage');
    expect(table.stdout).not.toContain(SECRET);
    expect(table.stdout).toContain('PWNED');
    expect(table.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    const json = await leash(['trace', SECRET, '--json'], caFile);
    expect(json.code).toBe(0);
    const answer = JSON.parse(json.stdout) as { operations: Array<Record<string, unknown>>; holders: Array<Record<string, unknown>> };
    expect(answer.operations).toContainEqual(expect.objectContaining({ lease, route: 'api', method: 'GET', path: '/v1/models', status: '2xx', count: 30 }));
    expect(answer.holders).toContainEqual(expect.objectContaining({ lease, credential: 'api', issued: expect.any(String), released: expect.any(String) }));
    const unknown = await leash(['trace', 'sk-never-held-by-anything-0123456789'], caFile);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toContain('no active lease holds it');
  }, 30_000);

  it('a busy sidecar: one batch per flush (no key twice in a flush), counts add up, MAXLEN applied', async () => {
    const { proxy } = await setup({ flushInterval: '200ms', maxLen: 1000 });
    // A long stream, more than maxLen: the flush's MAXLEN ~ cuts it back.
    const pipe = client!.pipeline();
    for (let i = 0; i < 1500; i++) pipe.xadd('leash:audit', '*', 'event', 'filler', 'at', 'x');
    await pipe.exec();
    await requests(proxy, 40, '/v1/a');
    await requests(proxy, 20, '/v1/b');
    const usage = await until(
      async () => (await stream()).filter((e) => e.event === 'usage'),
      (u) => u.reduce((n, e) => n + Number(e.count), 0) >= 60,
    );
    expect(usage.reduce((n, e) => n + Number(e.count), 0)).toBe(60);
    const flushes = new Map<string, Entry[]>();
    for (const e of usage) flushes.set(e.at!, [...(flushes.get(e.at!) ?? []), e]);
    for (const batch of flushes.values()) expect(new Set(batch.map(usageKey)).size).toBe(batch.length);
    // Far fewer entries than requests: a summary per key per flush.
    expect(usage.length).toBeLessThanOrEqual(2 * flushes.size);
    expect(await client!.xlen('leash:audit')).toBeLessThanOrEqual(1000 + 10 + 10);
  }, 30_000);
});
