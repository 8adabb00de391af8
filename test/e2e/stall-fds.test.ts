import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
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
const conns: KeptConn[] = [];
const held: Socket[] = [];

afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  for (const s of held.splice(0)) s.destroy();
  leash?.child.kill('SIGKILL');
  leash = undefined;
  await upstream?.close();
  upstream = undefined;
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
});
