import { execFile } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { api, bootstrap } from '../helpers/replicas.js';
import { CLI, writeTemp } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Version skew in the audit stream (docs/audit.md, "Schema version"): sidecars of a newer
 * leash write `v:2` entries next to this version's `v:1`. `leash trace` (the authority's
 * summary and the CLI's table) shows what it can: a newer entry is listed as written and
 * marked, never read as v1 into HELD BY or OPERATIONS (its fields may mean something else).
 * Real Redis, a real authority, the built CLI as a process.
 */
let redis: TestRedis;
let authority: TestAuthority;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  authority = await startAuthority({
    redis: redis.url,
    credentials: { api: { kind: 'jwt', audience: 'api', ttl: '10m' } },
    policies: [{ identities: ['join:agent-*'], credentials: ['api'] }],
  });
});
afterAll(async () => {
  client?.disconnect();
  await authority?.stop();
  await redis?.stop();
});

/** The built CLI, asynchronously (the authority answering it runs in this process). */
function leash(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 }, (_e, stdout, stderr) =>
      resolve({ status: child.exitCode, stdout, stderr }),
    );
  });
}

describe('leash trace meets audit entries of a newer schema', () => {
  it('v:2 entries are listed as written and marked newer; only v:1 ones are added up', async () => {
    const boot = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    const lease = await api<{ lease: string; fingerprint: string }>(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: boot.client, body: { credential: 'api' } });
    expect(lease.status).toBe(200);
    const { lease: id, fingerprint } = lease.body;
    await waitFor(async () => (await client.xlen('leash:audit')) > 0, { timeoutMs: 2_000, message: 'lease.issued in the stream' });
    const usage = (v: string, path: string, count: string, extra: string[] = []) =>
      client.xadd('leash:audit', '*', 'event', 'usage', 'at', new Date().toISOString(), 'v', v, 'instance', 'i-1', 'route', 'api', 'lease', id, 'method', 'GET', 'path', path, 'status', '2xx', 'count', count, ...extra);
    await usage('1', '/v1/read', '5');
    // A newer sidecar: `count` may now be something else (tokens, say): not to be added up as requests.
    await usage('2', '/v2/write', '7000', ['unit', 'tokens']);
    await client.xadd('leash:audit', '*', 'event', 'lease.frozen', 'at', new Date().toISOString(), 'v', '2', 'lease', id, 'fingerprint', fingerprint, 'until', 'later');

    const caFile = writeTemp('ca.pem', authority.caPem);
    const env = { LEASH_AUTHORITY_URL: authority.url, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN_TOKEN };
    const json = await leash(['trace', fingerprint, '--json'], env);
    expect(json.status, json.stderr).toBe(0);
    const answer = JSON.parse(json.stdout) as { operations: Array<{ path: string; count: number }>; events: Array<Record<string, string>> };
    expect(answer.operations).toEqual([expect.objectContaining({ path: '/v1/read', count: 5 })]);
    expect(answer.events.filter((e) => e.v === '2').map((e) => e.event)).toEqual(['usage', 'lease.frozen']);

    const table = await leash(['trace', fingerprint], env);
    expect(table.status, table.stderr).toBe(0);
    const out = table.stdout;
    const opsSection = out.slice(out.indexOf('OPERATIONS'), out.indexOf('EVENTS'));
    expect(opsSection).toContain('/v1/read');
    expect(opsSection).not.toContain('/v2/write');
    expect(out).toMatch(/usage .*path=\/v2\/write.*unit=tokens.*\[v2, newer than this leash\]/);
    expect(out).toMatch(/lease\.frozen .*until=later.*\[v2, newer than this leash\]/);
    expect(out).toMatch(/2 events were written by a newer leash/);
    expect(out).not.toMatch(/lease\.issued.*newer than this leash/);
  });
});

describe('leash scopes meets audit entries of a newer schema', () => {
  it('v:2 usage entries are not read as v1 (a refusal under a renamed field would widen the allow list); counted and said', async () => {
    const key = 'sc:audit';
    const usage = (v: string, method: string, path: string, extra: string[] = []) =>
      client.xadd(key, '*', 'event', 'usage', 'at', new Date().toISOString(), 'v', v, 'instance', 'i-1', 'route', 'api', 'credential', 'api', 'lease', 'l-1', 'method', method, 'path', path, 'status', '2xx', 'count', '3', ...extra);
    await usage('1', 'GET', '/v1/read');
    // A newer sidecar that calls a refusal `refused` (not `denied`) and its status `class`:
    // read as v1, these are 3 forwarded DELETEs, and the suggested allow list would allow them.
    await usage('2', 'DELETE', '/v1/admin/everything', ['refused', 'leash_denied', 'class', '4xx']);
    const env = { LEASH_REDIS_URL: redis.url };
    const json = await leash(['scopes', '--prefix', 'sc:', '--json'], env);
    expect(json.status, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as { routes: Array<{ route: string; narrowest: string[]; requests: number }>; skipped: Record<string, number> };
    expect(report.routes).toEqual([expect.objectContaining({ route: 'api', requests: 3, narrowest: ['GET /v1/read'] })]);
    expect(report.skipped.newer).toBe(1);
    const text = await leash(['scopes', '--prefix', 'sc:'], env);
    expect(text.stdout).not.toContain('DELETE');
    expect(text.stdout).toContain('not read: 1 audit entry of a newer schema than this leash reads (v1)');
  });
});
