import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit, PER_REQUEST_EVENTS, redisAuditSink, type RedisAuditSink } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { countEvents, runLoops, waitFor } from '../helpers/rotation-sidecar.js';
import { sleep } from '../helpers/wait.js';

/**
 * Issue 7, "agent-driven re-leasing with no limit": an upstream that answers 401 to
 * everything, four agents hammering the route for a bounded time. Before the fix each
 * 401 leased again (1,489 leases in 15 s of a static credential, ~135 audit entries a
 * second in the shared stream). Now a route refreshes at most once per window (30 s by
 * default), and never again for a value the authority hands back unchanged; the
 * sidecar's copy to the audit stream is within its token bucket.
 */
const SECRET = 'sk-static-refused-by-upstream-0123456789';
const INSTANCE = 'agent-hammer';
const AGENTS = 4;
const HAMMER_MS = 1_500;
// A small budget, so that the old behaviour (an entry per lease) would overrun it within the run.
const BUDGET = { burst: 8, perMinute: 60 };

let redis: TestRedis;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Sidecar | undefined;
let sink: RedisAuditSink | undefined;
let client: Redis | undefined;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});
afterEach(async () => {
  await sidecar?.stop();
  sink?.close?.();
  client?.disconnect();
  await upstream?.close();
  await authority?.stop();
  sidecar = upstream = authority = sink = client = undefined;
});

async function hammer(credentials: Record<string, unknown>) {
  authority = await startAuthority(
    { trustDomain: 'leash.local', credentials, policies: [{ identities: ['join:agent-*'], credentials: ['api'] }] },
    { env: { API: SECRET } },
  );
  let refused = 0;
  upstream = await startUpstream((_req, res) => {
    refused++;
    res.writeHead(401, { 'content-type': 'text/plain' }).end('no');
  });
  const token = await authority.token('agent-hammer');
  const config = parseConfig(
    sidecarSchema,
    JSON.stringify({
      instance: { id: INSTANCE },
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      shutdown: { grace: '2s' },
      authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
      revocations: { redis: redis.url, auditStream: BUDGET },
      routes: { api: { upstream: upstream.url, credential: 'api', inject: { header: 'x-api-key' }, allow: ['GET /**'] } },
    }),
    {},
  );
  // As `leash sidecar` wires it (src/bin/sidecar.ts): lifecycle events copied to <prefix>audit within the budget.
  const logs = new LogSink();
  const logger = createLogger({ level: 'debug', destination: logs });
  client = new Redis(redis.url);
  await client.del('leash:audit');
  sink = redisAuditSink(client, 'leash:audit', logger, undefined, PER_REQUEST_EVENTS, config.revocations!.auditStream);
  sidecar = new Sidecar({ config, env: {}, caFiles: new Map(), logger, audit: createAudit(logger, sink), authorityCa: authority.caPem, joinToken: () => token });
  const addrs = await sidecar.start();
  const url = `http://127.0.0.1:${addrs.proxy.port}/api/v1/x`;
  const adminUrl = `http://127.0.0.1:${addrs.admin.port}`;

  const started = performance.now();
  const results = await runLoops([url], AGENTS, () => performance.now() - started > HAMMER_MS);
  const elapsedMs = performance.now() - started;
  return { results, refused: () => refused, logs, adminUrl, elapsedMs, auth: authority };
}

/** Waits until `count()` has not changed for `quietMs` (the authority has stopped issuing), and returns it. */
async function whenQuiet(count: () => number, quietMs = 400, timeoutMs = 5_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let last = count();
  let since = performance.now();
  while (performance.now() - since < quietMs) {
    if (performance.now() > deadline) throw new Error(`still changing after ${timeoutMs}ms (at ${last})`);
    await sleep(25);
    const now = count();
    if (now !== last) [last, since] = [now, performance.now()];
  }
  return last;
}

async function instanceEntries(): Promise<Array<Record<string, string>>> {
  const raw = (await client!.xrange('leash:audit', '-', '+')) as [string, string[]][];
  return raw
    .map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 ? [] : [[v, f[i + 1]!]]))) as Record<string, string>)
    .filter((e) => e.instance === INSTANCE);
}

describe('refresh after upstream 401s is bounded', () => {
  it('a static credential the upstream refuses is leased exactly twice, however hard four agents hammer', { timeout: 20_000 }, async () => {
    const run = await hammer({ api: { kind: 'static', source: { env: 'API' }, ttl: '10m' } });
    // Real load reached the upstream, and every answer was its 401 (leash does not replay).
    expect(run.results.length).toBeGreaterThan(50);
    expect(run.results.every((r) => r.status === 401)).toBe(true);
    expect(run.refused()).toBe(run.results.length);
    // Initial lease + the one refresh, and nothing after it (the agents stopped; stragglers would show here).
    expect(await whenQuiet(() => countEvents(run.auth.logs, 'lease.issued'))).toBe(2);
    // The one refresh found the same value again: reported once, then no more leasing.
    const report = 'the upstream refuses the credential the authority issues';
    expect(run.logs.lines.filter((l) => l.includes(report))).toHaveLength(1);
    expect(run.logs.lines.join('\n')).not.toContain(SECRET);
    const metrics = await (await fetch(`${run.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_upstream_auth_refresh_skipped_total\{route="api",reason="refused-value"\} [1-9]/);

    // The stream: bootstrapped, acquired, rotated, one 401 burst — and never more than the budget allows.
    const entries = await waitFor(async () => {
      const e = await instanceEntries();
      return e.length >= 4 ? e : undefined;
    }, 'the audit stream entries', 3_000);
    expect(entries.length).toBeLessThanOrEqual(BUDGET.burst + Math.ceil((run.elapsedMs / 60_000) * BUDGET.perMinute) + 1);
    // …and one anomaly.auth_failure_burst for the whole hammering (anomalies.md), wherever it falls among them.
    expect(entries.filter((e) => e.event !== 'anomaly.auth_failure_burst').map((e) => e.event)).toEqual(['instance.bootstrapped', 'credential.acquired', 'credential.rotated']);
    expect(entries.filter((e) => e.event === 'anomaly.auth_failure_burst')).toHaveLength(1);
  });

  it('a JWT the upstream refuses is leased again once per window (default 30 s): exactly two leases', { timeout: 20_000 }, async () => {
    const run = await hammer({ api: { kind: 'jwt', audience: 'api', ttl: '10m' } });
    expect(run.results.length).toBeGreaterThan(50);
    expect(run.results.every((r) => r.status === 401)).toBe(true);
    expect(await whenQuiet(() => countEvents(run.auth.logs, 'lease.issued'))).toBe(2);
    const metrics = await (await fetch(`${run.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_upstream_auth_refresh_skipped_total\{route="api",reason="window"\} [1-9]/);
    const entries = await waitFor(async () => {
      const e = await instanceEntries();
      return e.length >= 4 ? e : undefined;
    }, 'the audit stream entries', 3_000);
    expect(entries.length).toBeLessThanOrEqual(BUDGET.burst + Math.ceil((run.elapsedMs / 60_000) * BUDGET.perMinute) + 1);
    // …and one anomaly.auth_failure_burst for the whole hammering (anomalies.md), wherever it falls among them.
    expect(entries.filter((e) => e.event !== 'anomaly.auth_failure_burst').map((e) => e.event)).toEqual(['instance.bootstrapped', 'credential.acquired', 'credential.rotated']);
    expect(entries.filter((e) => e.event === 'anomaly.auth_failure_burst')).toHaveLength(1);
  });
});
