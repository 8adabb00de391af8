import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The log reader stops reading: a container runtime's log shim that is stuck, a `| tee`
 * that is paused. leash's stdout is then a full pipe (here a socket pair, as Node's spawn
 * makes it) that nobody drains.
 *
 * Found: fd 1 was left blocking until something in the process happened to open
 * `process.stdout` (the first proxied response's `pipe()`), so a sidecar that had only
 * refused requests (or only logged rotation failures) blocked in write(2) once the pipe was
 * full: no answer to the agent, no /healthz, no revocation, no SIGTERM — the whole process
 * hung on its log reader.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-stall-test-4Vb8Qw2Nm6Xc1Lz9Pr3Ty7';
let upstream: Upstream | undefined;
let leash: Spawned | undefined;
let redis: TestRedis | undefined;
let client: Redis | undefined;

afterEach(async () => {
  leash?.child.kill('SIGKILL');
  leash = undefined;
  client?.disconnect();
  await upstream?.close();
  await redis?.stop();
  upstream = redis = client = undefined;
});

/** Requests counted by the `usage` summaries in leash:audit, by method. */
async function usageCount(method: string): Promise<number> {
  const raw = (await client!.xrange('leash:audit', '-', '+')) as Array<[string, string[]]>;
  let n = 0;
  for (const [, f] of raw) {
    const e: Record<string, string> = {};
    for (let i = 0; i + 1 < f.length; i += 2) e[f[i]!] = f[i + 1]!;
    if (e.event === 'usage' && e.method === method) n += Number(e.count);
  }
  return n;
}

const portOf = (addr: unknown) => Number(String(addr).split(':').pop());
/** One request that must be answered within 2 s (a hung sidecar fails the test, not vitest's timeout). */
const get = (url: string, method = 'GET') => fetch(url, { method, signal: AbortSignal.timeout(2_000) });

describe('a stalled log reader', () => {
  it('keeps the sidecar serving (refused and forwarded requests, /healthz); lines past the bound are dropped and counted, none reordered', async () => {
    upstream = await startUpstream((_req, res) => res.end('ok'));
    redis = await startRedis();
    client = new Redis(redis.url);
    const config = {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      audit: { redis: redis.url, flushInterval: '100ms' },
      routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    };
    leash = spawnLeash(['sidecar', '--config', writeTemp('sidecar.json', JSON.stringify(config))], { KEY: SECRET });
    const started = await leash.waitFor((l) => l.msg === 'leash sidecar started');
    const proxy = `http://127.0.0.1:${portOf(started.listen)}`;
    const admin = `http://127.0.0.1:${portOf(started.admin)}`;

    // The reader stops. Nothing has been forwarded yet: every request below is refused
    // (403, an audit line each naming its ~12 KB path), ~100 MB of log in all, far past
    // both the pipe's buffer and leash's 8 MiB bound.
    leash.child.stdout!.pause();
    const pad = 'p'.repeat(12_000);
    const sent = 900;
    for (let i = 0; i < sent; i++) {
      const res = await get(`${proxy}/api/${i}-${pad}`, 'DELETE');
      expect(res.status).toBe(403);
      await res.arrayBuffer();
    }
    expect((await get(`${admin}/healthz`)).status).toBe(200);
    const forwarded = await get(`${proxy}/api/v1/x`);
    expect(await forwarded.text()).toBe('ok');
    // Dropping is never silent: the count is a metric while the reader is still stuck.
    const metrics = await (await get(`${admin}/metrics`)).text();
    const droppedMetric = Number(/^leash_log_lines_dropped_total (\d+)$/m.exec(metrics)?.[1]);
    expect(droppedMetric).toBeGreaterThan(0);
    // The audit trail in Redis does not go through stdout: every refused request is in it.
    await waitFor(async () => (await usageCount('DELETE')) === sent, { message: `${sent} DELETE in usage summaries` });
    const rss = Number(/^process_resident_memory_bytes (\d+)$/m.exec(metrics)?.[1]);
    expect(rss).toBeLessThan(300 * 1024 * 1024);

    // The reader resumes: what was kept comes out in order, then one line counts the rest.
    leash.child.stdout!.resume();
    const notice = await leash.waitFor((l) => l.msg === 'log lines dropped: stdout was not being read', 10_000);
    const denied = leash.lines
      .filter((l) => l.includes('"event":"request.denied"'))
      .map((l) => Number(/"path":"\/(\d+)-/.exec(l)?.[1]));
    expect(denied.length).toBeGreaterThan(0);
    expect(denied).toEqual([...denied].sort((a, b) => a - b));
    // Every refused request's line is either out or counted (the count may also hold the forwarded request's line).
    expect(sent - denied.length).toBeLessThanOrEqual(Number(notice.dropped));
    expect(Number(notice.dropped)).toBeLessThanOrEqual(sent - denied.length + 1);
    expect(Number(notice.dropped)).toBe(droppedMetric);
    // Logging goes on after the stall.
    await get(`${proxy}/api/after`, 'DELETE');
    await leash.waitFor((l) => l.event === 'request.denied' && l.path === '/after');
    await waitFor(async () => (await get(`${admin}/metrics`)).text().then((t) => t.includes(`leash_log_lines_dropped_total ${droppedMetric}`)));
    expect(leash.lines.join('\n')).not.toContain(SECRET);
  }, 30_000);
});
