import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { keptConn, type KeptConn } from '../helpers/kept-conn.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * The sidecar runs out of file descriptors (a low `ulimit -n`, a leak elsewhere in the
 * container, an agent holding connections open): its limit is lowered, with prlimit, to
 * exactly what it holds, so every new descriptor fails with EMFILE. Agent and admin
 * requests go over connections opened before.
 */
// Made up for this test (no vendor issues keys of this shape).
const FIRST = 'sk-fds-first-9Kd2Lq7Vm4Xw1Nz8Pt3Rb6';
const SECOND = 'sk-fds-second-3Hf8Jw1Qc6Yt9Ls2Mv5Gx';
let upstream: Upstream | undefined;
let leash: Spawned | undefined;
let redis: TestRedis | undefined;
let client: Redis | undefined;
let authority: TestAuthority | undefined;
const conns: KeptConn[] = [];
const held: Socket[] = [];

afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  for (const s of held.splice(0)) s.destroy();
  leash?.child.kill('SIGKILL');
  leash = undefined;
  await upstream?.close();
  await authority?.stop();
  client?.disconnect();
  await redis?.stop();
  upstream = authority = client = redis = undefined;
});

const portOf = (addr: unknown) => Number(String(addr).split(':').pop());
const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
/** The soft and hard limits on open files of `pid`. */
const nofile = (pid: number) => {
  const [soft, hard] = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))!.slice(1).map(Number);
  return { soft: soft!, hard: hard! };
};
/** Sets the soft limit only (the hard one stays, so it can be raised back without privileges). */
const setNofile = (pid: number, soft: number) => execFileSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:${nofile(pid).hard}`]);
/** CPU time (utime + stime, clock ticks) the process used so far. */
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
};
const kept = async (port: number) => {
  const c = await keptConn(port);
  conns.push(c);
  return c;
};

describe('out of file descriptors', () => {
  it('no crash or busy loop; coded errors to the agent; a file credential rotated meanwhile is read once descriptors are back, without waiting for a request', async () => {
    const keyFile = writeTemp('api-key', `${FIRST}\n`);
    // Closes every upstream connection after its answer: each forwarded request needs a new socket.
    upstream = await startUpstream((req, res) => {
      res.setHeader('connection', 'close');
      res.end(req.headers.authorization === `Bearer ${SECOND}` ? 'second' : req.headers.authorization === `Bearer ${FIRST}` ? 'first' : 'none');
    });
    const config = {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      credentialFiles: { pollInterval: '100ms' },
      routes: { api: { upstream: upstream.url, credential: { file: keyFile }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    };
    leash = spawnLeash(['sidecar', '--config', writeTemp('sidecar.json', JSON.stringify(config))]);
    const started = await leash.waitFor((l) => l.msg === 'leash sidecar started');
    const pid = leash.child.pid!;
    const proxy = await kept(portOf(started.listen));
    const admin = await kept(portOf(started.admin));
    expect(await proxy.request('/api/warm')).toEqual({ status: 200, body: 'first' });
    expect((await admin.request('/readyz')).status).toBe(200);

    await waitFor(() => openFds(pid) <= 30, { message: 'the warm-up connection to the upstream closed' });
    const limit = nofile(pid).soft;
    setNofile(pid, openFds(pid));
    try {
      // New agent connections take what is left; then one is accepted and closed at once
      // (libuv's reserve descriptor): no answer is possible, and nothing hangs.
      let refused = false;
      for (let i = 0; i < 20 && !refused; i++) {
        const c = connect(portOf(started.listen), '127.0.0.1');
        held.push(c);
        c.on('error', () => undefined);
        refused = await new Promise<boolean>((resolve) => {
          c.once('close', () => resolve(true));
          setTimeout(() => resolve(false), 150);
        });
      }
      expect(refused).toBe(true);
      // A request on a kept connection: the upstream connect fails, the agent gets leash's 502.
      const unreachable = await proxy.request('/api/y');
      expect(unreachable.status).toBe(502);
      expect(JSON.parse(unreachable.body)).toMatchObject({ error: { type: 'leash_upstream_unreachable', route: 'api' } });
      expect(unreachable.body).toContain('EMFILE');
      // The credential file is rotated now: it cannot be opened. The old value is not sent
      // on (it may be the revoked one): the route is unavailable, and says why.
      writeFileSync(keyFile, `${SECOND}\n`);
      await leash.waitFor((l) => l.event === 'credential.refresh_failed' && String(l.error).includes('EMFILE'), 3_000);
      const unavailable = await proxy.request('/api/z');
      expect(unavailable.status).toBe(503);
      expect(JSON.parse(unavailable.body)).toMatchObject({ error: { type: 'leash_credential_unavailable' } });
      expect((await admin.request('/readyz')).status).toBe(503);
      // No busy loop while it lasts (the stat poll runs every 100 ms).
      const before = cpuTicks(pid);
      await sleep(1_000);
      expect(cpuTicks(pid) - before).toBeLessThan(30);
      expect(leash.child.exitCode).toBeNull();
    } finally {
      setNofile(pid, limit);
    }
    // Descriptors are back. No agent request is sent: the poll alone reads the new file.
    await waitFor(async () => (await admin.request('/readyz')).status === 200, { timeoutMs: 3_000, message: 'ready again' });
    expect(await proxy.request('/api/after')).toEqual({ status: 200, body: 'second' });
    expect(await (await fetch(`http://127.0.0.1:${portOf(started.listen)}/api/new`)).text()).toBe('second');
    expect([...leash.lines, ...leash.stderr].join('\n')).not.toMatch(/sk-fds-/);
  });

  it('leased: a re-lease that cannot connect fails closed; a revocation the bus cannot receive (no reconnect) is applied from the stream once descriptors are back', async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    authority = await startAuthority({
      redis: redis.url,
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    const seen: Array<{ jti: string; at: number }> = [];
    upstream = await startUpstream((req, res) => {
      seen.push({ jti: String(decodeJwt(String(req.headers.authorization).slice(7)).jti), at: Date.now() });
      res.end('ok');
    });
    const config = {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      authority: { url: authority.url, caFile: writeTemp('ca.pem', authority.caPem), timeout: '1s', bootstrap: { joinToken: { env: 'JT' } } },
      rotation: { backoff: { base: '100ms', cap: '300ms' } },
      revocations: { redis: redis.url },
      routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    };
    leash = spawnLeash(['sidecar', '--config', writeTemp('sidecar.json', JSON.stringify(config))], { JT: await authority.token('agent-1') });
    const started = await leash.waitFor((l) => l.msg === 'leash sidecar started');
    const pid = leash.child.pid!;
    const proxy = await kept(portOf(started.listen));
    const admin = await kept(portOf(started.admin));
    await waitFor(async () => (await admin.request('/readyz')).status === 200, { message: 'ready' });
    type Status = { revocations: { channel: string }; routes: { search: { lease: string | null } } };
    const status = async () => JSON.parse((await admin.request('/status')).body) as Status;
    expect(await proxy.request('/search/warm')).toEqual({ status: 200, body: 'ok' });
    const first = (await status()).routes.search.lease!;
    let lease = first;

    const limit = nofile(pid).soft;
    // Below every descriptor number the process holds: any new one fails with EMFILE, even
    // in a slot the killed connections free. (No new agent connection is made meanwhile:
    // at such a limit libuv cannot even accept-and-close one, and spins on the listener.)
    setNofile(pid, 10);
    try {
      // A revocation arrives on the open connection; the next lease needs a new connection
      // to the authority (it closed the idle one), which cannot be made: the route fails
      // closed, and says why.
      authority.running.server.server.closeIdleConnections();
      await authority.running.authority.revoke('test', 'lease', first, 'leaked');
      const dropped = await leash.waitFor((l) => l.msg === 'revocation applied' && l.target === first, 3_000);
      const answer = await proxy.request('/search/during');
      expect(answer.status).toBe(503);
      expect(JSON.parse(answer.body)).toMatchObject({ error: { type: 'leash_credential_unavailable', route: 'search' } });
      const ready = await admin.request('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatch(/EMFILE/);
      expect(seen.filter((s) => s.jti === first && s.at > Date.parse(String(dropped.time)))).toEqual([]);
      // Descriptors back for a moment: a new lease. Then none again.
      setNofile(pid, limit);
      await waitFor(async () => (await proxy.request('/search/between')).status === 200, { message: 'a new lease' });
      lease = (await status()).routes.search.lease!;
      expect(lease).not.toBe(first);
      setNofile(pid, 10);
      // Redis drops the sidecar's connections; every reconnect fails with EMFILE.
      await client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await client.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await waitFor(async () => (await status()).revocations.channel === 'down', { message: 'channel down' });
      await authority.running.authority.revoke('test', 'lease', lease, 'leaked');
      // No busy loop while the bus retries.
      const before = cpuTicks(pid);
      await sleep(1_000);
      expect(cpuTicks(pid) - before).toBeLessThan(30);
      expect((await status()).revocations.channel).toBe('down');
      expect(leash.child.exitCode).toBeNull();
    } finally {
      setNofile(pid, limit);
    }
    // Descriptors are back: the bus reconnects, reads the stream, applies the revocation.
    const applied = await leash.waitFor((l) => l.msg === 'revocation applied' && l.target === lease, 5_000);
    const appliedAt = Date.parse(String(applied.time));
    await waitFor(async () => (await proxy.request('/search/after')).status === 200, { message: 'a 200 with a new lease' });
    expect((await status()).routes.search.lease).not.toBe(lease);
    expect(seen.filter((s) => s.jti === lease && s.at > appliedAt)).toEqual([]);
    expect(seen.at(-1)!.jti).not.toBe(lease);
  });
});
