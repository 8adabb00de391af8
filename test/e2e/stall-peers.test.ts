import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { runLeash, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The sidecar's peers are paused (SIGSTOP): redis-server, then the authority. Their
 * sockets stay open and silent — no refusal, no reset — which is what a frozen container,
 * a suspended VM or a host under memory pressure looks like from the sidecar.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-peers-static-5Tg7Yh2Uj9Ik4Ol1Pa8Sd3';
const ADMIN = 'stall-peers-admin-token-0123456789abcdef';
let redis: TestRedis | undefined;
let client: Redis | undefined;
let upstream: Upstream | undefined;
const procs: Spawned[] = [];
const stopped: number[] = [];

afterEach(async () => {
  for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');
  for (const p of procs.splice(0)) p.child.kill('SIGKILL');
  client?.disconnect();
  await upstream?.close();
  await redis?.stop();
  redis = client = upstream = undefined;
});

const portOf = (addr: unknown) => Number(String(addr).split(':').pop());
const pause = (pid: number) => {
  process.kill(pid, 'SIGSTOP');
  stopped.push(pid);
};
const resume = (pid: number) => {
  process.kill(pid, 'SIGCONT');
  stopped.splice(stopped.indexOf(pid), 1);
};

async function setup(ttl: string) {
  redis = await startRedis();
  client = new Redis(redis.url);
  const redisPid = Number(/process_id:(\d+)/.exec(await client.info('server'))![1]);
  const ca = CertificateAuthority.generate('leash.local');
  const caFile = writeTemp('ca.pem', ca.caPem);
  const authority = spawnLeash(
    [
      'authority',
      '--config',
      writeTemp(
        'authority.json',
        JSON.stringify({
          listen: '127.0.0.1:0',
          hostnames: ['127.0.0.1'],
          redis: redis.url,
          ca: { certFile: caFile, keyFile: writeTemp('ca-key.pem', ca.exportPrivateKeyPem()) },
          admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
          credentials: { api: { kind: 'static', source: { env: 'API_SECRET' }, ttl } },
          policies: [{ identities: ['join:agent-*'], credentials: ['api'] }],
        }),
      ),
    ],
    { LEASH_ADMIN_TOKEN: ADMIN, API_SECRET: SECRET },
  );
  procs.push(authority);
  const authorityUrl = `https://127.0.0.1:${portOf((await authority.waitFor((l) => l.msg === 'leash authority started')).listen)}`;
  const created = runLeash(['token', 'create', '--identity', 'agent-1', '--ttl', '5m'], { LEASH_AUTHORITY_URL: authorityUrl, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN });
  expect(created.status).toBe(0);
  upstream = await startUpstream((req, res) => res.end(req.headers['x-api-key'] === SECRET ? 'ok' : 'no'));
  const sidecar = spawnLeash(
    [
      'sidecar',
      '--config',
      writeTemp(
        'sidecar.json',
        JSON.stringify({
          listen: '127.0.0.1:0',
          admin: '127.0.0.1:0',
          authority: { url: authorityUrl, caFile, timeout: '500ms', bootstrap: { joinToken: { env: 'JT' } } },
          rotation: { backoff: { base: '100ms', cap: '300ms' } },
          revocations: { redis: redis.url },
          routes: { api: { upstream: upstream.url, credential: 'api', inject: { header: 'x-api-key' }, allow: ['GET /**'] } },
        }),
      ),
    ],
    { JT: created.stdout.trim() },
  );
  procs.push(sidecar);
  const started = await sidecar.waitFor((l) => l.msg === 'leash sidecar started');
  const proxy = `http://127.0.0.1:${portOf(started.listen)}`;
  const admin = `http://127.0.0.1:${portOf(started.admin)}`;
  await waitFor(async () => (await fetch(`${admin}/readyz`)).status === 200, { message: 'ready' });
  return { redisPid, authority, sidecar, proxy, admin };
}

const get = async (url: string) => {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  return { status: res.status, body: await res.text() };
};

type Status = { revocations: { channel: string; downSeconds: number | null } | null; routes: { api: { lease: string | null; available: boolean } } };
const statusOf = async (admin: string) => (await (await fetch(`${admin}/status`)).json()) as Status;
const readyz = async (admin: string) => {
  const res = await fetch(`${admin}/readyz`);
  return { status: res.status, body: (await res.json()) as { errors: { routes: Record<string, string> } } };
};

describe('paused peers', () => {
  it('redis-server stopped: the lease is used while valid, then 503 with the reason; the channel shows down; all recovers on SIGCONT', async () => {
    const { redisPid, sidecar, proxy, admin } = await setup('3s');
    const lease = (await statusOf(admin)).routes.api.lease;
    expect(await get(`${proxy}/api/x`)).toEqual({ status: 200, body: 'ok' });
    expect((await statusOf(admin)).revocations).toEqual({ channel: 'up', downSeconds: null });
    pause(redisPid);
    const pausedAt = performance.now();
    // The authority cannot issue without Redis: the lease is used until its safety margin (¼ of 3 s) …
    const answers: Array<{ at: number; status: number }> = [];
    await waitFor(
      async () => {
        const r = await get(`${proxy}/api/x`);
        answers.push({ at: performance.now() - pausedAt, status: r.status });
        return r.status === 503 ? r : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 100, message: 'a 503 once the lease is past its margin' },
    );
    expect(answers[0]!.status).toBe(200);
    expect(answers.filter((a) => a.status === 200).every((a) => a.at < 2_400)).toBe(true);
    // … then nothing is forwarded, and /readyz says why.
    const ready = await readyz(admin);
    expect(ready.status).toBe(503);
    expect(ready.body.errors.routes.api).toMatch(/authority/);
    // The revocation channel is noticed down (heartbeat: ~2 s PING, 3 s deadline), in /status and the log.
    await waitFor(async () => (await statusOf(admin)).revocations?.channel === 'down', { timeoutMs: 6_000, message: 'channel down in /status' });
    await sidecar.waitFor((l) => l.level === 'warn' && String(l.msg).startsWith('revocation channel down'), 1_000);
    resume(redisPid);
    await waitFor(async () => (await statusOf(admin)).revocations?.channel === 'up', { timeoutMs: 5_000, message: 'channel up' });
    await sidecar.waitFor((l) => String(l.msg).startsWith('revocation channel up again'), 1_000);
    await waitFor(async () => (await get(`${proxy}/api/x`)).status === 200, { timeoutMs: 5_000, message: 'serving again' });
    expect((await statusOf(admin)).routes.api.lease).not.toBe(lease);
  }, 25_000);

  it('the authority stopped: the lease is used while valid, then 503 with the reason; a new lease on SIGCONT', async () => {
    const { authority, proxy, admin } = await setup('3s');
    expect(await get(`${proxy}/api/x`)).toEqual({ status: 200, body: 'ok' });
    const lease = (await statusOf(admin)).routes.api.lease;
    pause(authority.child.pid!);
    const pausedAt = performance.now();
    const answers: Array<{ at: number; status: number; body: string }> = [];
    await waitFor(
      async () => {
        const r = await get(`${proxy}/api/x`);
        answers.push({ at: performance.now() - pausedAt, ...r });
        return r.status === 503;
      },
      { timeoutMs: 5_000, intervalMs: 100, message: 'a 503 once the lease is past its margin' },
    );
    expect(answers.filter((a) => a.status === 200).every((a) => a.at < 2_400)).toBe(true);
    expect(JSON.parse(answers.at(-1)!.body)).toMatchObject({ error: { type: 'leash_credential_unavailable', route: 'api' } });
    const ready = await readyz(admin);
    expect(ready.status).toBe(503);
    expect(ready.body.errors.routes.api).toMatch(/authority unreachable \(ETIMEDOUT\)/);
    resume(authority.child.pid!);
    await waitFor(async () => (await get(`${proxy}/api/x`)).status === 200, { timeoutMs: 5_000, message: 'serving again' });
    expect((await statusOf(admin)).routes.api.lease).not.toBe(lease);
  }, 20_000);
});
