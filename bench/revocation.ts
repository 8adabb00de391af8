import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { redisConnector } from '../src/bus/connect.js';
import { RedisRevocationPublisher, RedisRevocationSubscriber } from '../src/bus/redis.js';
import { sleep } from './lib.js';

/**
 * Revocation propagation: publish (RedisRevocationPublisher.publish: XADD + PUBLISH) →
 * delivered to the `revocation` event of each of N RedisRevocationSubscriber instances
 * spread over C child processes. Times are process.hrtime (CLOCK_MONOTONIC, one clock for
 * every process of the host). Usage:
 *   node dist/bench/revocation.js [--subscribers 500] [--children 4] [--revocations 200] [--interval 50]
 */
const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const now = () => process.hrtime.bigint();

type ToChild = { type: 'stop' };
type FromChild = { type: 'up' } | { type: 'samples'; samples: [string, string][]; perSub: number[]; malformed: number; gaps: number };

async function child(url: string, count: number): Promise<void> {
  const samples: [string, string][] = [];
  const perSub: number[] = new Array(count).fill(0);
  let malformed = 0;
  let gaps = 0;
  const subs: RedisRevocationSubscriber[] = [];
  for (let i = 0; i < count; i++) {
    subs.push(
      new RedisRevocationSubscriber(
        { connect: redisConnector(url) },
        {
          revocation: (r) => {
            samples.push([r.id, String(now())]);
            perSub[i]!++;
          },
          channel: () => undefined,
          gap: () => void gaps++,
          malformed: () => void malformed++,
        },
      ),
    );
  }
  for (let i = 0; i < subs.length; i += 25) await Promise.all(subs.slice(i, i + 25).map((s) => s.start()));
  process.send!({ type: 'up' } satisfies FromChild);
  process.on('message', async (m: ToChild) => {
    if (m.type !== 'stop') return;
    process.send!({ type: 'samples', samples, perSub, malformed, gaps } satisfies FromChild, () => {
      void Promise.all(subs.map((s) => s.close())).then(() => process.exit(0));
    });
  });
}

async function startRedis(): Promise<{ port: number; stop: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-bench-redis-'));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
  const c = new Redis({ port, lazyConnect: true, retryStrategy: () => 50 });
  c.on('error', () => undefined);
  for (let i = 0; i < 100; i++) {
    try {
      await c.connect();
      await c.ping();
      break;
    } catch {
      await sleep(50);
    }
  }
  c.disconnect();
  return {
    port,
    stop: () => {
      proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function main(): Promise<void> {
  const n = arg('subscribers', 500);
  const children = arg('children', 4);
  const revocations = arg('revocations', 200);
  const intervalMs = arg('interval', 50);
  const redis = await startRedis();
  const url = `redis://127.0.0.1:${redis.port}`;
  const self = fileURLToPath(import.meta.url);
  const procs: ChildProcess[] = [];
  const results: Extract<FromChild, { type: 'samples' }>[] = [];
  const ups: Promise<void>[] = [];
  const done: Promise<void>[] = [];
  for (let c = 0; c < children; c++) {
    const count = Math.floor(n / children) + (c < n % children ? 1 : 0);
    const p = fork(self, ['--child', url, String(count)], { stdio: 'inherit' });
    procs.push(p);
    ups.push(new Promise((resolve) => p.on('message', (m: FromChild) => m.type === 'up' && resolve())));
    done.push(new Promise((resolve) => p.on('message', (m: FromChild) => m.type === 'samples' && (results.push(m), resolve()))));
  }
  const t0 = Date.now();
  await Promise.all(ups);
  const upMs = Date.now() - t0;
  await sleep(500);
  const client = new Redis(url);
  const publisher = new RedisRevocationPublisher(client, 3_600_000);
  const sentAt = new Map<string, bigint>();
  const publishUs: number[] = [];
  for (let i = 0; i < revocations; i++) {
    const start = now();
    const r = await publisher.publish({ scope: 'lease', target: `lease-${i}`, reason: 'bench', by: 'bench' });
    publishUs.push(Number(now() - start) / 1e3);
    sentAt.set(r.id, start);
    await sleep(intervalMs);
  }
  await sleep(1_000);
  for (const p of procs) p.send({ type: 'stop' } satisfies ToChild);
  await Promise.all(done);
  client.disconnect();
  redis.stop();

  const lat: number[] = [];
  let unknown = 0;
  for (const r of results) {
    for (const [id, at] of r.samples) {
      const s = sentAt.get(id);
      if (s === undefined) unknown++;
      else lat.push(Number(BigInt(at) - s) / 1e6);
    }
  }
  lat.sort((a, b) => a - b);
  publishUs.sort((a, b) => a - b);
  const perSub = results.flatMap((r) => r.perSub);
  const expected = n * revocations;
  const out = {
    machine: `${cpus()[0]?.model ?? '?'} × ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${(await import('node:child_process')).execSync('redis-server --version').toString().trim().split(' ')[2]}`,
    subscribers: n,
    children,
    revocations,
    intervalMs,
    subscribersUpMs: upMs,
    delivered: lat.length,
    expected,
    lost: expected - lat.length,
    minPerSubscriber: Math.min(...perSub),
    unknownIds: unknown,
    malformed: results.reduce((a, r) => a + r.malformed, 0),
    gaps: results.reduce((a, r) => a + r.gaps, 0),
    publishMs: { p50: +(pct(publishUs, 50) / 1e3).toFixed(3), p99: +(pct(publishUs, 99) / 1e3).toFixed(3) },
    latencyMs: { p50: +pct(lat, 50).toFixed(2), p90: +pct(lat, 90).toFixed(2), p99: +pct(lat, 99).toFixed(2), p999: +pct(lat, 99.9).toFixed(2), max: +lat[lat.length - 1]!.toFixed(2) },
  };
  console.log(JSON.stringify(out, null, 2));
}

if (process.argv[2] === '--child') void child(process.argv[3]!, Number(process.argv[4]));
else void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
