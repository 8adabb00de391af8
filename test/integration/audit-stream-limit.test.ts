import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { createAudit, PER_REQUEST_EVENTS, redisAuditSink, type AuditEvent } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/rotation-sidecar.js';

/**
 * Issue 7: one sidecar in a refresh loop appended ~135 lifecycle events a second to the
 * shared `leash:audit` stream and flushed the fleet's history in minutes. The sidecar's
 * copy is now a token bucket (burst, perMinute): within it every event goes to the
 * stream; over it events stay in the log only and are counted into one
 * `audit.suppressed` entry written as soon as the budget allows.
 */
let redis: TestRedis;
let client: Redis;
beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

async function entries(key: string): Promise<Array<Record<string, string>>> {
  const raw = (await client.xrange(key, '-', '+')) as [string, string[]][];
  return raw.map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 ? [] : [[v, f[i + 1]!]]))) as Record<string, string>);
}

describe('the sidecar copy to the audit stream is bounded', () => {
  it('a flood of 200 lifecycle events: the burst, then one counted summary per token, all of them in the log', async () => {
    let now = 0;
    const clock: Clock = { monotonicMs: () => now, wallMs: () => Date.parse('2026-11-26T12:00:00Z') + now };
    const logs = new LogSink();
    const logger = createLogger({ level: 'info', destination: logs });
    const key = 'test:flood:audit';
    const sink = redisAuditSink(client, key, logger, undefined, PER_REQUEST_EVENTS, { burst: 5, perMinute: 60 }, clock);
    const audit = createAudit(logger, sink);
    const rotate = (i: number) => audit.emit('credential.rotated', { instance: 'agent-1', route: 'api', fingerprint: `sha256:${String(i).padStart(12, '0')}` });
    for (let i = 0; i < 200; i++) {
      rotate(i);
      audit.emit('request', { instance: 'agent-1', route: 'api', status: 401 }); // per-request: never in the stream, never counted
    }
    await client.ping(); // every XADD sent before this has been applied
    let stream = await entries(key);
    expect(stream.map((e) => e.fingerprint)).toEqual([0, 1, 2, 3, 4].map((i) => `sha256:${String(i).padStart(12, '0')}`));

    // One token later (1 s at 60/min), the next event brings the summary out first; the event itself waits.
    now += 1_000;
    rotate(200);
    await client.ping();
    stream = await entries(key);
    expect(stream).toHaveLength(6);
    expect(stream[5]).toMatchObject({ event: 'audit.suppressed', instance: 'agent-1', count: '195', events: 'credential.rotated=195' });
    expect(Date.parse(stream[5]!.first!)).toBeLessThanOrEqual(Date.parse(stream[5]!.last!));

    // Plenty of budget again: the pending summary (1 event), then events as usual.
    now += 10_000;
    audit.emit('credential.expired', { instance: 'agent-1', route: 'api', fingerprint: 'sha256:aaaaaaaaaaaa' });
    await client.ping();
    stream = await entries(key);
    expect(stream.slice(6).map((e) => [e.event, e.count])).toEqual([
      ['audit.suppressed', '1'],
      ['credential.expired', undefined],
    ]);
    // Bound: burst + perMinute · elapsed (11 s) — here 8 entries for 202 lifecycle events.
    expect(stream.length).toBeLessThanOrEqual(5 + 11);
    sink.close();
    // The log kept every event; the summaries were logged as warnings, without values.
    expect(logs.lines.filter((l) => l.includes('"event":"credential.rotated"'))).toHaveLength(201);
    expect(logs.lines.filter((l) => l.includes('audit stream budget exceeded'))).toHaveLength(2);
  });

  it('when the writer falls silent after a burst, the summary still arrives once a token is back', async () => {
    const key = 'test:silent:audit';
    const logger = createLogger({ level: 'info', destination: new LogSink() });
    // 600/min: a token every 100 ms.
    const sink = redisAuditSink(client, key, logger, undefined, PER_REQUEST_EVENTS, { burst: 2, perMinute: 600 });
    const audit = createAudit(logger, sink);
    const events: AuditEvent[] = ['credential.refresh_failed', 'credential.revoked'];
    for (let i = 0; i < 50; i++) audit.emit(events[i % 2]!, { instance: 'agent-2', route: 'api', error: 'x' });
    const summary = await waitFor(async () => (await entries(key)).find((e) => e.event === 'audit.suppressed'), 'the suppressed summary', 3_000);
    expect(summary).toMatchObject({ instance: 'agent-2', count: '48', events: 'credential.refresh_failed=24,credential.revoked=24' });
    expect(await entries(key)).toHaveLength(3);
    sink.close();
  });
});
