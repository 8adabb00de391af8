import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { keptConn } from '../helpers/kept-conn.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * The host pauses the sidecar (SIGSTOP: a cgroup freezer, a debugger, a VM that is
 * suspended, CPU starvation) while agents queue requests and a revocation is published.
 * On SIGCONT the event loop sees everything at once.
 */
let redis: TestRedis | undefined;
let client: Redis | undefined;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let leash: Spawned | undefined;
const agents: Socket[] = [];
/** Every token the upstream saw: its lease id (jti) and when (wall ms). */
const seen: Array<{ jti: string; at: number; path: string; exp: number }> = [];

afterEach(async () => {
  for (const s of agents.splice(0)) s.destroy();
  if (leash) {
    leash.child.kill('SIGCONT');
    leash.child.kill('SIGKILL');
  }
  leash = undefined;
  client?.disconnect();
  await upstream?.close();
  await authority?.stop();
  await redis?.stop();
  redis = client = authority = upstream = undefined;
  seen.length = 0;
});

const portOf = (addr: unknown) => Number(String(addr).split(':').pop());

async function setup(ttl = '5m'): Promise<{ proxyPort: number; admin: string }> {
  redis = await startRedis();
  client = new Redis(redis.url);
  authority = await startAuthority({
    redis: redis.url,
    credentials: { search: { kind: 'jwt', audience: 'search-api', ttl } },
    policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
  });
  upstream = await startUpstream((req, res) => {
    const claims = decodeJwt(String(req.headers.authorization).slice(7));
    seen.push({ jti: String(claims.jti), at: Date.now(), path: req.url ?? '', exp: Number(claims.exp) * 1000 });
    res.end('ok');
  });
  const config = {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    authority: { url: authority.url, caFile: writeTemp('ca.pem', authority.caPem), bootstrap: { joinToken: { env: 'JT' } } },
    revocations: { redis: redis.url },
    routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
  };
  leash = spawnLeash(['sidecar', '--config', writeTemp('sidecar.json', JSON.stringify(config))], { JT: await authority.token('agent-1') });
  const started = await leash.waitFor((l) => l.msg === 'leash sidecar started');
  const admin = `http://127.0.0.1:${portOf(started.admin)}`;
  await waitFor(async () => (await fetch(`${admin}/readyz`)).status === 200);
  await waitFor(async () => /^leash_revocation_channel_up 1$/m.test(await (await fetch(`${admin}/metrics`)).text()));
  return { proxyPort: portOf(started.listen), admin };
}

const leaseOf = async (admin: string) => ((await (await fetch(`${admin}/status`)).json()) as { routes: { search: { lease: string | null } } }).routes.search.lease;

describe('a paused sidecar', () => {
  it('a revocation that reached it while it was stopped is applied before any request queued meanwhile is forwarded', async () => {
    const { proxyPort, admin } = await setup();
    const lease = (await leaseOf(admin))!;
    const a = await keptConn(proxyPort);
    const b = await keptConn(proxyPort);
    agents.push(a.socket, b.socket);
    const c = connect(proxyPort, '127.0.0.1');
    agents.push(c);
    await new Promise((r) => c.once('connect', r));
    // Kept-alive connections, and a pooled upstream socket: nothing new to open on resume.
    expect((await a.request('/search/warm-a')).status).toBe(200);
    expect((await b.request('/search/warm-b')).status).toBe(200);

    leash!.child.kill('SIGSTOP');
    await sleep(100);
    // Queued before the revocation: a whole request on a, the first byte of one on c.
    const before = a.request('/search/before');
    c.write('G');
    await sleep(50);
    await new RedisRevocationPublisher(client!, 3_600_000).publish({ scope: 'lease', target: lease, reason: 'leaked', by: 'test' });
    const revokedAt = Date.now();
    await sleep(50);
    // After it: a request on b, and the rest of c's (its socket was readable before the revocation's).
    const after = b.request('/search/after');
    let cAnswer = '';
    c.on('data', (d: Buffer) => (cAnswer += d.toString('latin1')));
    c.write('ET /search/partial HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n');
    await sleep(700);
    leash!.child.kill('SIGCONT');

    // Every agent is answered: 503 (the lease is gone) or 200 with the next lease.
    for (const { status } of await Promise.all([before, after])) expect([200, 503]).toContain(status);
    await waitFor(() => cAnswer.includes('\r\n\r\n'), { message: "c's answer" });
    expect(cAnswer).toMatch(/^HTTP\/1\.1 (200|503) /);
    // Nothing reached the upstream with the revoked lease once it had been revoked.
    expect(seen.filter((s) => s.jti === lease && s.at >= revokedAt)).toEqual([]);
    // And the sidecar goes on with a new lease.
    await waitFor(async () => (await a.request('/search/later')).status === 200, { message: 'a 200 with the next lease' });
    expect(seen.at(-1)!.jti).not.toBe(lease);
  });

  it('stopped past its lease TTL: a request queued meanwhile is never sent with the expired lease', async () => {
    const { proxyPort } = await setup('2s');
    const a = await keptConn(proxyPort);
    agents.push(a.socket);
    expect((await a.request('/search/warm')).status).toBe(200);
    const { jti: lease, exp } = seen.at(-1)!;
    leash!.child.kill('SIGSTOP');
    // Past the lease's expiry while stopped; the request waits in the socket.
    await sleep(Math.max(0, exp - Date.now()) + 300);
    const queued = a.request('/search/queued');
    await sleep(50);
    leash!.child.kill('SIGCONT');
    expect([200, 503]).toContain((await queued).status);
    expect(seen.filter((s) => s.jti === lease && s.at >= exp)).toEqual([]);
    await waitFor(async () => (await a.request('/search/later')).status === 200, { message: 'a 200 with the next lease' });
    expect(seen.at(-1)!.jti).not.toBe(lease);
  });
});
