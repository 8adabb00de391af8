import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestRedis } from './redis.js';
import { freePort } from './ports.js';
import { sleep } from './wait.js';

/**
 * Redis processes for the revocation-bus tests. Like test/helpers/redis.ts (private
 * redis-server per file, loopback, own directory) plus:
 * - `persistent`: AOF with fsync always, so the stream survives a SIGKILL + restart as it
 *   does in production with persistence (without it a restart loses the stream);
 * - extra arguments;
 * - a Sentinel watching a master (`startSentinel`).
 */
const REDIS_SERVER = process.env.LEASH_TEST_REDIS_SERVER ?? 'redis-server';


/** One raw command over RESP (inline); resolves with the first reply line, or undefined. */
export function rawCommand(port: number, line: string, timeoutMs = 500): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v: string | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.once('error', () => done(undefined));
    sock.once('connect', () => sock.write(`${line}\r\n`));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(buf);
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function launch(args: string[], port: number, ready: (port: number) => Promise<boolean>): Promise<ChildProcess> {
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString('utf8')));
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (spawnError) throw spawnError;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server on port ${port} exited: ${output.trim()}`);
    if (await ready(port)) return child;
    await sleep(20);
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server on port ${port} not ready within 5 s: ${output.trim()}`);
}

const pong = async (port: number) => (await rawCommand(port, 'PING'))?.startsWith('+PONG') ?? false;

export interface BusRedisOptions {
  /** AOF, fsync always: the stream survives kill + restart. */
  persistent?: boolean;
  args?: string[];
}

export interface BusRedis extends TestRedis {
  dir: string;
}

export async function startBusRedis(options: BusRedisOptions = {}): Promise<BusRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-bus-redis-'));
  const argsFor = (port: number) => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', '--save', '',
    ...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    ...(options.args ?? []),
  ];
  let child: ChildProcess | undefined;
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    try {
      child = await launch(argsFor(port), port, pong);
    } catch (err) {
      lastError = err;
    }
  }
  if (!child) throw new Error(`could not start redis-server: ${String(lastError)}`);
  process.once('exit', () => child?.kill('SIGKILL'));
  const end = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c) return;
    child = undefined;
    c.kill(signal);
    await exited(c);
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    async stop() {
      await end('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      await end('SIGKILL');
    },
    async restart() {
      await end('SIGKILL');
      const deadline = Date.now() + 8000;
      for (;;) {
        try {
          // With AOF, PING answers -LOADING until the file is replayed; `pong` waits for +PONG.
          child = await launch(argsFor(port), port, pong);
          return;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await sleep(50);
        }
      }
    },
  };
}

export interface TestSentinel {
  port: number;
  name: string;
  stop(): Promise<void>;
}

/** A Sentinel (redis-server --sentinel) monitoring the master on masterPort under `name`. */
export async function startSentinel(masterPort: number, name = 'leashmaster'): Promise<TestSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-sentinel-'));
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  mkdirSync(dir, { recursive: true });
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`, `sentinel down-after-milliseconds ${name} 5000`, ''].join('\n'));
  const child = await launch([conf, '--sentinel'], port, async (p) => {
    const reply = await rawCommand(p, `SENTINEL get-master-addr-by-name ${name}`);
    return reply !== undefined && reply.includes(String(masterPort));
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    port,
    name,
    async stop() {
      child.kill('SIGKILL');
      await exited(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
