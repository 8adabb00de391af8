import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { sleep } from '../helpers/wait.js';

/**
 * SIGUSR1 makes Node 20 open its inspector on 127.0.0.1:9229 without authentication: the
 * agent shares the loopback, so whoever may signal leash (same uid, or CAP_KILL in a
 * shared PID namespace) could then run code in it and read every credential. leash keeps
 * a listener of its own on SIGUSR1 so that Node never does; the process keeps serving.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-signal-test-7Hq2Lm9Xv4Rt8Kp3Zw6Ns1';
let upstream: Upstream | undefined;
let leash: Spawned | undefined;

afterEach(async () => {
  leash?.child.kill('SIGKILL');
  leash = undefined;
  await upstream?.close();
  upstream = undefined;
});

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('SIGUSR1 never opens the inspector', () => {
  it('a sidecar signalled five times keeps serving, with no inspector and nothing about one on stderr', async () => {
    upstream = await startUpstream((req, res) => res.end(req.headers.authorization === `Bearer ${SECRET}` ? 'ok' : 'no'));
    const config = {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      routes: { api: { upstream: upstream.url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    };
    leash = spawnLeash(['sidecar', '--config', writeTemp('sidecar.json', JSON.stringify(config))], { KEY: SECRET });
    const started = await leash.waitFor((l) => l.msg === 'leash sidecar started');
    const port = Number(String(started.listen).split(':').pop());
    const inspectorBefore = await listening(9229);
    for (let i = 0; i < 5; i++) {
      leash.child.kill('SIGUSR1');
      await sleep(100);
    }
    await sleep(500);
    const stderr = leash.stderr.join('');
    expect(stderr).not.toMatch(/Debugger|inspector on|ws:\/\//);
    expect(stderr).toContain('SIGUSR1 ignored');
    if (!inspectorBefore) expect(await listening(9229)).toBe(false);
    expect(leash.child.exitCode).toBeNull();
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/x`);
    expect(await res.text()).toBe('ok');
    expect([...leash.lines, stderr].join('\n')).not.toContain(SECRET);
  });
});
