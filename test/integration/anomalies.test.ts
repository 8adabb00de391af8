import { networkInterfaces } from 'node:os';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { waitFor as poll } from '../helpers/wait.js';

/**
 * Anomalies through a real sidecar and a real upstream. The sidecar's clock is the system
 * clock plus a skew the test moves, so the learning window passes without waiting.
 */
const external = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

let upstream: Upstream;
let sidecar: Sidecar;
let logs: LogSink;
let proxyPort: number;
let adminUrl: string;
let skew = 0;

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    res.statusCode = req.url?.startsWith('/v1/secret') ? 401 : 200;
    res.end('{}');
  });
  // A fake key made up for this test (never a real credential).
  const env = { UPSTREAM_KEY: 'sk-anomaly-test-value-0123456789' };
  const config = parseConfig(
    sidecarSchema,
    JSON.stringify({
      // Every interface, so the test can also arrive from a non-loopback address.
      listen: '0.0.0.0:0',
      admin: '127.0.0.1:0',
      shutdown: { grace: '2s' },
      anomalies: { learningWindow: '10m', authFailureBurst: { count: 3, window: '1m' } },
      routes: {
        api: {
          upstream: upstream.url,
          credential: { env: 'UPSTREAM_KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['GET /v1/models/*', 'POST /v1/chat/completions', 'GET /v1/secret'],
        },
      },
    }),
    env,
  );
  logs = new LogSink();
  const logger = createLogger({ level: 'debug', destination: logs });
  const clock = { monotonicMs: () => performance.now() + skew, wallMs: () => Date.now() + skew };
  sidecar = new Sidecar({ config, env, caFiles: new Map(), logger, audit: createAudit(logger), clock });
  const addrs = await sidecar.start();
  proxyPort = addrs.proxy.port;
  adminUrl = `http://127.0.0.1:${addrs.admin.port}`;
});

afterAll(async () => {
  await sidecar?.stop();
  await upstream?.close();
});

function call(method: string, path: string, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port: proxyPort, method, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** requestDone runs on the response's close: poll the captured log for the event. */
async function waitFor(event: string, n = 1): Promise<Record<string, unknown>[]> {
  await poll(() => logs.events(event).length >= n, { timeoutMs: 2_000, intervalMs: 10 }).catch(() => undefined);
  return logs.events(event);
}

async function anomalyCounts(): Promise<Record<string, number>> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^leash_anomalies_total\{route="([^"]+)",kind="([^"]+)"\} (\d+)$/gm)) out[`${m[1]}/${m[2]}`] = Number(m[3]);
  return out;
}

describe('anomalies through a real sidecar', () => {
  it('pre-creates leash_anomalies_total at 0 for every route × kind', async () => {
    expect(await anomalyCounts()).toEqual({
      'api/new_operation': 0,
      'api/non_loopback_client': 0,
      'api/auth_failure_burst': 0,
      '_none/non_loopback_client': 0,
    });
  });

  it('learns operations during the window and reports a new one after it (anomaly.new_operation)', async () => {
    expect(await call('GET', '/api/v1/models/gpt-4')).toBe(200);
    await waitFor('request');
    skew += 10 * 60_000;
    expect(await call('GET', '/api/v1/models/other')).toBe(200); // same rule: known
    expect(await call('POST', '/api/v1/chat/completions')).toBe(200);
    expect(await call('POST', '/api/v1/chat/completions')).toBe(200);
    expect(await call('DELETE', '/api/v1/models/x')).toBe(403); // refused: no operation
    await waitFor('request.denied');
    const events = await waitFor('anomaly.new_operation');
    expect(events.map((e) => ({ route: e.route, credential: e.credential, method: e.method, rule: e.rule, audit: e.audit }))).toEqual([
      { route: 'api', credential: 'env:UPSTREAM_KEY', method: 'POST', rule: 'POST /v1/chat/completions', audit: true },
    ]);
    expect((await anomalyCounts())['api/new_operation']).toBe(1);
  });

  it('reports one burst of upstream 401s (anomaly.auth_failure_burst)', async () => {
    for (let i = 0; i < 6; i++) expect(await call('GET', '/api/v1/secret')).toBe(401);
    const events = await waitFor('anomaly.auth_failure_burst');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ route: 'api', count: 3, windowMs: 60_000 });
    expect((await anomalyCounts())['api/auth_failure_burst']).toBe(1);
  });

  it.skipIf(!external)('reports a client arriving from a non-loopback address once (anomaly.non_loopback_client)', async () => {
    expect(logs.events('anomaly.non_loopback_client')).toHaveLength(0);
    expect(await call('GET', '/api/v1/models/gpt-4', external)).toBe(200);
    expect(await call('GET', '/api/v1/models/gpt-4', external)).toBe(200);
    expect(await call('GET', '/nope/x', external)).toBe(404);
    await waitFor('request.denied', 2);
    const events = await waitFor('anomaly.non_loopback_client');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ route: 'api', client: external });
    expect(await anomalyCounts()).toMatchObject({ 'api/non_loopback_client': 1, '_none/non_loopback_client': 0 });
  });

  it('never puts the credential in an anomaly event', () => {
    const lines = logs.lines.filter((l) => l.includes('"anomaly.'));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line).not.toContain('sk-anomaly-test-value');
  });
});
