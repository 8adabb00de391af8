import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { promisify } from 'node:util';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { CLI, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { compressRules, loadRuleGroups, PROMETHEUS } from '../helpers/monitoring.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The rotation alert end to end, with Debian's real `prometheus` on 127.0.0.1: it scrapes
 * a sidecar's admin listener and a spawned `leash authority`'s HTTPS listener (trusting the
 * authority's CA through tls_config.ca_file) every second and evaluates deploy/monitoring's
 * rules with time compressed 60× (`for: 5m` → 5 s, `[5m]` → 5 s; the expressions are the
 * production ones). The authority process is stopped (SIGTERM), so the sidecar's refreshes
 * fail and LeashCredentialRotationFailing must become firing in /api/v1/alerts; started
 * again (same config: port, CA, Redis), the sidecar recovers and the alert must resolve.
 */
const ALERT = 'LeashCredentialRotationFailing';
const ADMIN = 'prom-e2e-admin-token-0123456789abcdef';
const COMPRESSION = 60;

let tmp: string | undefined;
let prom: ChildProcess | undefined;
let promExit: Promise<unknown> | undefined;
let authority: Spawned | undefined;
let redis: TestRedis | undefined;
let upstream: Upstream | undefined;
let sidecar: RunningSidecar | undefined;

// A crashed run must not leave a Prometheus behind.
process.once('exit', () => {
  prom?.kill('SIGKILL');
  authority?.child.kill('SIGKILL');
});

afterAll(async () => {
  if (prom && prom.exitCode === null && prom.signalCode === null) {
    prom.kill('SIGTERM');
    const killer = setTimeout(() => prom?.kill('SIGKILL'), 5_000);
    await promExit;
    clearTimeout(killer);
  }
  await sidecar?.stop();
  await upstream?.close();
  if (authority && authority.child.exitCode === null && authority.child.signalCode === null) {
    authority.child.kill('SIGTERM');
    await authority.exit;
  }
  await redis?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Poll `probe` every 250 ms until it returns a value, or fail after `ms` saying what was awaited and what was seen last. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>, seen: () => string): Promise<T> {
  const found = await waitFor(
    async () => {
      const v = await probe().catch(() => undefined);
      return v === undefined ? undefined : { v };
    },
    { timeoutMs: ms, intervalMs: 250, message: () => `${what}; last seen: ${seen()}` },
  );
  return found.v;
}

interface PromAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

describe.skipIf(!PROMETHEUS)('alerts with a real Prometheus', () => {
  it('rotation breaks when the authority stops: LeashCredentialRotationFailing fires, then resolves when it is back', { timeout: 60_000 }, async () => {
    tmp = mkdtempSync(join(tmpdir(), 'leash-prom-'));
    // A real `leash authority` process on a fixed port, its CA from files and its records in
    // Redis, so the same config starts it again after it was stopped.
    redis = await startRedis();
    const ca = CertificateAuthority.generate('leash.local');
    const caFile = writeTemp('prom-ca.pem', ca.caPem);
    const authorityPort = await freePort();
    const config = writeTemp(
      'prom-authority.json',
      JSON.stringify({
        listen: `127.0.0.1:${authorityPort}`,
        hostnames: ['127.0.0.1'],
        ca: { certFile: caFile, keyFile: writeTemp('prom-ca-key.pem', ca.exportPrivateKeyPem()) },
        admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
        redis: redis.url,
        // A 4 s lease refreshes every ~2 s, so a stopped authority shows within seconds.
        credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '4s' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
      }),
    );
    const startAuthorityProcess = async () => {
      const p = spawnLeash(['authority', '--config', config], { LEASH_ADMIN_TOKEN: ADMIN });
      await p.waitFor((l) => l.msg === 'leash authority started', 15_000);
      return p;
    };
    authority = await startAuthorityProcess();
    const authorityUrl = `https://127.0.0.1:${authorityPort}`;
    const { stdout: token } = await promisify(execFile)(process.execPath, [CLI, 'token', 'create', '--identity', 'agent-prom'], {
      env: { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: authorityUrl, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN },
    });
    upstream = await startUpstream((_req, res) => res.end('ok'));
    sidecar = await startSidecar(
      {
        authority: { url: authorityUrl, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        rotation: { backoff: { base: '50ms', cap: '400ms' } },
        routes: { svc: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      },
      { authorityCa: ca.caPem, joinToken: () => token.trim() },
    );
    expect((await fetch(`${sidecar.url}/svc/x`)).status).toBe(200);
    const adminPort = Number(new URL(sidecar.adminUrl).port);

    writeFileSync(join(tmp, 'ca.pem'), ca.caPem);
    writeFileSync(join(tmp, 'rules.yml'), stringify({ groups: compressRules(loadRuleGroups(), COMPRESSION) }));
    writeFileSync(
      join(tmp, 'prometheus.yml'),
      stringify({
        global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
        rule_files: [join(tmp, 'rules.yml')],
        scrape_configs: [
          { job_name: 'leash', static_configs: [{ targets: [`127.0.0.1:${adminPort}`] }] },
          {
            job_name: 'leash-authority',
            scheme: 'https',
            // The authority's certificate names 127.0.0.1 (hostnames) and chains to its CA.
            tls_config: { ca_file: join(tmp, 'ca.pem') },
            static_configs: [{ targets: [`127.0.0.1:${authorityPort}`] }],
          },
        ],
      }),
    );
    const promPort = await freePort();
    const promUrl = `http://127.0.0.1:${promPort}`;
    const promLog: string[] = [];
    prom = spawn(
      PROMETHEUS!,
      [`--config.file=${join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prom.stdout!.on('data', (d: Buffer) => promLog.push(d.toString()));
    prom.stderr!.on('data', (d: Buffer) => promLog.push(d.toString()));
    promExit = new Promise((resolve) => prom!.once('exit', resolve));
    const api = async <T>(path: string): Promise<T> => ((await (await fetch(`${promUrl}${path}`)).json()) as { data: T }).data;

    // Both targets scraped successfully — the authority over HTTPS, verified with its CA.
    let targets = '';
    await until(
      'both targets up',
      15_000,
      async () => {
        const t = await api<{ activeTargets: Array<{ labels: { job: string }; scrapeUrl: string; health: string; lastError: string }> }>('/api/v1/targets');
        targets = JSON.stringify(t.activeTargets.map((x) => [x.scrapeUrl, x.health, x.lastError]));
        const up = t.activeTargets.filter((x) => x.health === 'up').map((x) => x.scrapeUrl);
        return up.length === 2 ? up : undefined;
      },
      () => `${targets}\n${promLog.join('')}`,
    ).then((up) => expect(up.sort()).toEqual([`http://127.0.0.1:${adminPort}/metrics`, `https://127.0.0.1:${authorityPort}/metrics`].sort()));

    const firingRotation = async () => {
      const { alerts } = await api<{ alerts: PromAlert[] }>('/api/v1/alerts');
      return alerts.filter((a) => a.labels.alertname === ALERT);
    };
    let last: PromAlert[] = [];
    const seen = () => JSON.stringify(last);
    // Healthy: no alert at all pending or firing, once every group has evaluated twice on
    // scraped data (a sidecar without revocations: once exposed leash_revocation_channel_up 0,
    // and LeashRevocationChannelDown fired on it).
    const healthyFrom = Date.now() + 2_000;
    let evaluated = '';
    await until(
      'every rule group evaluated on scraped data',
      15_000,
      async () => {
        const { groups } = await api<{ groups: Array<{ name: string; lastEvaluation: string }> }>('/api/v1/rules');
        evaluated = JSON.stringify(groups.map((g) => [g.name, g.lastEvaluation]));
        return groups.length > 0 && groups.every((g) => Date.parse(g.lastEvaluation) > healthyFrom) ? true : undefined;
      },
      () => evaluated,
    );
    const healthy = (await api<{ alerts: PromAlert[] }>('/api/v1/alerts')).alerts;
    expect(healthy.map((a) => `${a.labels.alertname} ${a.state}`)).toEqual([]);

    // Stop the authority: the process ends (SIGTERM, its orderly shutdown).
    authority.child.kill('SIGTERM');
    expect(await authority.exit).toBe(0);
    const stoppedAt = performance.now();
    const firing = await until(`${ALERT} firing`, 25_000, async () => {
      last = await firingRotation();
      return last.find((a) => a.state === 'firing');
    }, seen);
    const firedAfter = performance.now() - stoppedAt;
    expect(firing.labels).toMatchObject({ alertname: ALERT, severity: 'warning', job: 'leash', route: 'svc', instance: `127.0.0.1:${adminPort}` });
    // Not before `for` (5 s compressed) has passed since the first failure could be seen.
    expect(firedAfter).toBeGreaterThan(5_000);

    // Started again: a new process, the same config.
    authority = await startAuthorityProcess();
    const restartedAt = performance.now();
    await until(`${ALERT} resolved`, 25_000, async () => {
      last = await firingRotation();
      return last.length === 0 ? true : undefined;
    }, seen);
    const resolvedAfter = performance.now() - restartedAt;
    // The sidecar serves again: the alert resolved because rotation works, not because data vanished.
    expect((await fetch(`${sidecar.url}/svc/x`)).status).toBe(200);
    const up = await api<{ result: Array<{ metric: { job: string }; value: [number, string] }> }>('/api/v1/query?query=up');
    expect(up.result.map((r) => [r.metric.job, r.value[1]]).sort()).toEqual([
      ['leash', '1'],
      ['leash-authority', '1'],
    ]);
    console.log(`prometheus-alerts: ${ALERT} firing ${Math.round(firedAfter)} ms after the authority stopped, resolved ${Math.round(resolvedAfter)} ms after it restarted`);
  });
});

if (!PROMETHEUS) {
  describe('alerts with a real Prometheus', () => {
    it.skip('skipped: no `prometheus` binary on PATH (Debian: apt-get install prometheus)', () => {});
  });
}
