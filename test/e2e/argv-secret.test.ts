import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { argvHoldsSecret } from '../../src/cli.js';
import { makeCa } from '../helpers/proxy-tls.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

/**
 * `/proc/<pid>/cmdline` is readable by every user of the host (`ps aux`) for as long as a
 * command runs. `leash trace sk-…` (the value is fingerprinted locally, but it is on the
 * command line) and `leash scopes --redis redis://:pw@…` / `leash dev --redis …` kept the
 * secret there for the whole run: up to the 10 s admin timeout for trace, for good for
 * dev. The CLI now overwrites its title (argv's memory) before anything is awaited.
 */
// Made up for this test, vendor-shaped: never a real key.
const SECRET = 'sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u';
const PASSWORD = 'Hunter2ZebraCrane';

/** A peer that accepts and never answers: the command waits on it. */
let server: Server | undefined;
const sockets = new Set<Socket>();
let proc: Spawned | undefined;
afterEach(async () => {
  proc?.child.kill('SIGKILL');
  await proc?.exit;
  proc = undefined;
  for (const s of sockets) s.destroy();
  sockets.clear();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function silentPeer(): Promise<number> {
  server = createServer((s) => void sockets.add(s));
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

/** Once the command is waiting on the peer, its command line holds no trace of `secret`. */
async function expectGoneWhileWaiting(p: Spawned, secret: string): Promise<void> {
  const pid = p.child.pid!;
  // Waiting on the peer: the connection is open (the CLI loaded and parsed its arguments).
  const until = Date.now() + 10_000;
  while (sockets.size === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(sockets.size, 'the command reached the peer').toBeGreaterThan(0);
  const seen = cmdline(pid);
  expect(seen).not.toBe('');
  expect(seen).not.toContain(secret);
  expect(seen).not.toContain(secret.slice(0, 12));
}

describe('no secret stays on the command line', () => {
  it.skipIf(process.platform !== 'linux')('leash trace SECRET', async () => {
    const port = await silentPeer();
    const ca = writeTemp('ca.pem', makeCa().certPem);
    proc = spawnLeash(['trace', SECRET, '--authority', `https://127.0.0.1:${port}`, '--ca', ca], { LEASH_ADMIN_TOKEN: 't' });
    await expectGoneWhileWaiting(proc, SECRET);
  });

  it.skipIf(process.platform !== 'linux')('leash scopes --redis with a password', async () => {
    const port = await silentPeer();
    proc = spawnLeash(['scopes', '--redis', `redis://default:${PASSWORD}@127.0.0.1:${port}`]);
    await expectGoneWhileWaiting(proc, PASSWORD);
  });

  it('which command lines hold one', () => {
    const run = (name: string, values: Record<string, string>, positionals: string[] = []) => argvHoldsSecret({ name, values, positionals });
    expect(run('trace', {}, [SECRET])).toBe(true);
    expect(run('trace', {}, ['-'])).toBe(false);
    expect(run('trace', {}, ['sha256:c871f067542d'])).toBe(false);
    for (const url of [`redis://:${PASSWORD}@h:6379`, `rediss://default:${PASSWORD}@h`, `redis://u:p@ss@h`, `redis:/:${PASSWORD}@h`]) {
      expect(run('scopes', { redis: url }), url).toBe(true);
      expect(run('dev', { redis: url }), url).toBe(true);
    }
    expect(run('scopes', { redis: 'redis://h:6379' })).toBe(false);
    expect(run('check', { config: '/etc/leash/sidecar.yaml' })).toBe(false);
  });
});
