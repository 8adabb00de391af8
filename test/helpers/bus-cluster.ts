import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { rawCommand } from './bus-redis.js';
import { freePort } from './ports.js';
import { sleep } from './wait.js';

/**
 * A private Redis Cluster for the revocation-bus tests: N masters (no replicas), each a
 * `redis-server --cluster-enabled yes` on loopback in its own temporary directory, joined
 * with `redis-cli --cluster create`. The cluster bus port is chosen free too
 * (`--cluster-port`), since port + 10000 may be taken or past 65535.
 */
const REDIS_SERVER = process.env.LEASH_TEST_REDIS_SERVER ?? 'redis-server';
const REDIS_CLI = process.env.LEASH_TEST_REDIS_CLI ?? 'redis-cli';

/** Undefined when redis-cli can run here, else why not (the cluster tests are skipped then). */
export function redisCliMissing(): string | undefined {
  const r = spawnSync(REDIS_CLI, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error) return `${REDIS_CLI} not runnable (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})`;
  if (r.status !== 0) return `${REDIS_CLI} --version exited ${r.status}`;
  return undefined;
}

export interface ClusterNode {
  port: number;
  busPort: number;
  dir: string;
  child: ChildProcess | undefined;
  output: string;
}

export interface TestCluster {
  nodes: ClusterNode[];
  /** Seed list for ioredis Cluster / redisConnector({ cluster }). */
  seeds: { host: string; port: number }[];
  /** Plain (non-cluster) client to one node, for per-node admin commands; closed by stop(). */
  node(port: number): Redis;
  /** Kill every redis-server (SIGKILL) and remove the temporary directories; idempotent. */
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

const pong = async (port: number) => (await rawCommand(port, 'PING'))?.startsWith('+PONG') ?? false;

async function startNode(): Promise<ClusterNode> {
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    let busPort = await freePort();
    while (busPort === port) busPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'leash-cluster-'));
    const node: ClusterNode = { port, busPort, dir, child: undefined, output: '' };
    const args = [
      '--port', String(port), '--cluster-port', String(busPort), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000',
      '--save', '', '--appendonly', 'no',
    ];
    const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    node.child = child;
    child.stdout!.on('data', (d: Buffer) => (node.output += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (node.output += d.toString('utf8')));
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    process.once('exit', () => child.kill('SIGKILL'));
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      if (spawnError) throw spawnError;
      if (child.exitCode !== null || child.signalCode !== null) break;
      if (await pong(port)) return node;
      await sleep(20);
    }
    child.kill('SIGKILL');
    await exited(child);
    rmSync(dir, { recursive: true, force: true });
    lastError = `redis-server on port ${port} failed: ${node.output.trim()}`;
  }
  throw new Error(`could not start a cluster node: ${lastError}`);
}

function runCli(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * Start `size` cluster-enabled nodes, create the cluster (no replicas) and wait (bounded)
 * until every node reports cluster_state:ok, knows all nodes and sees every slot assigned.
 * On any failure what was started is torn down before the error is thrown.
 */
export async function startCluster(size = 3, readyTimeoutMs = 10_000): Promise<TestCluster> {
  const nodes: ClusterNode[] = [];
  const admins = new Map<number, Redis>();
  let stopped = false;
  const cluster: TestCluster = {
    nodes,
    get seeds() {
      return nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
    },
    node(port: number) {
      let c = admins.get(port);
      if (!c) {
        c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, retryStrategy: () => 50, connectTimeout: 1_000, commandTimeout: 2_000 });
        c.on('error', () => undefined);
        admins.set(port, c);
      }
      return c;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of admins.values()) c.disconnect();
      admins.clear();
      await Promise.all(
        nodes.map(async (n) => {
          const c = n.child;
          n.child = undefined;
          if (c) {
            c.kill('SIGKILL');
            await exited(c);
          }
          rmSync(n.dir, { recursive: true, force: true });
        }),
      );
    },
  };
  try {
    nodes.push(...(await Promise.all(Array.from({ length: size }, () => startNode()))));
    const create = await runCli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], 15_000);
    if (create.code !== 0) throw new Error(`redis-cli --cluster create exited ${create.code}: ${create.output.trim().slice(-2000)}`);
    const deadline = Date.now() + readyTimeoutMs;
    let last = '';
    for (;;) {
      const infos = await Promise.all(nodes.map((n) => (cluster.node(n.port).cluster('INFO') as Promise<string>).catch((e: Error) => `error: ${e.message}`)));
      const ok = infos.every((i) => /cluster_state:ok/.test(i) && new RegExp(`cluster_known_nodes:${size}\\b`).test(i) && /cluster_slots_assigned:16384\b/.test(i));
      if (ok) break;
      last = infos.map((i, k) => `${nodes[k]!.port}: ${i.split(/\r?\n/).filter((l) => /state|assigned|known/.test(l)).join(' ')}`).join('; ');
      if (Date.now() > deadline) throw new Error(`cluster not ok within ${readyTimeoutMs} ms: ${last}`);
      await sleep(50);
    }
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
