import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, httpGet, RawConn, sleep, spawnNodeWithHello, stopChild, waitReady } from './lib.js';

/**
 * Instructions and syscalls per proxied request: repeatable figures on a noisy machine
 * (wall-clock figures are only comparable within one quiet, pinned run; instruction
 * counts are comparable across runs and days).
 *
 *   node dist/bench/instructions.js [--requests=N] [--leash-dist=DIR ...] [--audit-redis=URL]
 *
 * For each target (the bare http-proxy forwarder, then each leash build given, default
 * ./dist/src) the proxy runs under `valgrind --tool=callgrind`; after a warm-up the
 * counters are zeroed (`callgrind_control -z`), N requests are sent one at a time on
 * 4 keep-alive connections, and the counters dumped (`-d`): Ir ÷ N. Syscalls: the same
 * target without valgrind, `strace -f -c` attached around N requests.
 * With --audit-redis, the last leash build is measured a second time with `audit.redis` set
 * (per-request `usage` summaries flushed to `<prefix>audit` every 5 s; prefix
 * `leash-bench:`), so the cost of the summaries is the difference within one run.
 */
const HOST = '127.0.0.1';
// A fake key (the bench upstream only checks that it arrives): never a real credential.
const KEY = 'sk-bench-instructions-0123456789abcdef';
const args = process.argv.slice(2);
const N = Number(args.find((a) => a.startsWith('--requests='))?.split('=')[1] ?? 2000);
const WARM = Number(args.find((a) => a.startsWith('--warmup='))?.split('=')[1] ?? 3000);
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
const auditRedis = args.find((a) => a.startsWith('--audit-redis='))?.slice('--audit-redis='.length);
const dists = args.filter((a) => a.startsWith('--leash-dist=')).map((a) => resolve(a.slice('--leash-dist='.length)));
if (dists.length === 0) dists.push(join(ROOT, 'dist/src'));
const TMP = mkdtempSync(join(tmpdir(), 'leash-instr-'));
const env = { ...process.env, BENCH_KEY: KEY, UV_USE_IO_URING: '0' };

interface Target {
  name: string;
  /** node arguments after `node` (script and its args). */
  argv: string[];
  port: number;
  prefix: string;
}

async function drive(port: number, prefix: string, count: number): Promise<void> {
  const conns = await Promise.all([0, 1, 2, 3].map(() => RawConn.open(HOST, port)));
  const payload = httpGet(HOST, port, `${prefix}/v1/ok`);
  let left = count;
  await Promise.all(
    conns.map(async (c) => {
      while (left-- > 0) {
        const r = await c.request(payload);
        if (r.status !== 200) throw new Error(`status ${r.status}`);
      }
    }),
  );
  for (const c of conns) c.destroy();
}

function leashTarget(dist: string, upstreamPort: number, port: number, admin: number, tag: string, audit?: string): Target {
  const cfg = join(TMP, `${tag}.yaml`);
  writeFileSync(
    cfg,
    [
      `listen: "${HOST}:${port}"`,
      `admin: "${HOST}:${admin}"`,
      'shutdown: { grace: 1s }',
      'log: { level: info }',
      'routes:',
      '  bench:',
      `    upstream: "http://${HOST}:${upstreamPort}"`,
      '    credential: { env: BENCH_KEY }',
      '    inject: { header: authorization, format: "Bearer {{credential}}" }',
      '    allow: ["GET /v1/**"]',
      ...(audit ? [`audit: { redis: "${audit}", prefix: "leash-bench:" }`] : []),
      '',
    ].join('\n'),
  );
  return { name: `leash ${dist}${audit ? ' +audit' : ''}`, argv: [join(dist, 'cli.js'), 'sidecar', '--config', cfg], port, prefix: '/bench' };
}

function start(cmd: string, argv: string[], logTag: string): ChildProcess {
  const fd = openSync(join(TMP, `${logTag}.log`), 'w');
  const child = spawn(cmd, argv, { env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return child;
}

/** Instructions per request: main thread (the event loop) and all threads (GC, compiler, libuv pool). */
async function instructions(t: Target, tag: string): Promise<{ main: number; all: number }> {
  const out = join(TMP, `cg-${tag}`);
  const child = start('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}.%p`, '--smc-check=all-non-file', '--separate-threads=yes', process.execPath, ...t.argv], `vg-${tag}`);
  try {
    await waitReady(HOST, t.port, `${t.prefix}/v1/ok`, 180_000);
    await drive(t.port, t.prefix, WARM);
    run('callgrind_control', ['-z', String(child.pid)]);
    await drive(t.port, t.prefix, N);
    run('callgrind_control', ['-d', String(child.pid)]);
    await sleep(500);
  } finally {
    await stopChild(child, 'SIGTERM', 60_000);
  }
  // With --separate-threads the dump after -d is `<out>.<pid>.1-<thread>`; thread 01 is main.
  const files = readdirSync(TMP).filter((f) => f.startsWith(`cg-${tag}.`) && /\.1-\d+$/.test(f));
  if (files.length === 0) throw new Error(`no callgrind dump for ${t.name}`);
  let main = 0;
  let all = 0;
  for (const f of files) {
    const m = /^(?:summary|totals):\s*(\d+)/m.exec(readFileSync(join(TMP, f), 'utf8'));
    const ir = Number(m?.[1] ?? 0);
    all += ir;
    if (/\.1-0*1$/.test(f)) main = ir;
  }
  return { main: main / N, all: all / N };
}

async function syscalls(t: Target, tag: string): Promise<number> {
  const child = start(process.execPath, t.argv, `st-${tag}`);
  try {
    await waitReady(HOST, t.port, `${t.prefix}/v1/ok`, 30_000);
    await drive(t.port, t.prefix, WARM);
    const outFile = join(TMP, `strace-${tag}.txt`);
    const tracer = spawn('strace', ['-f', '-c', '-o', outFile, '-p', String(child.pid)], { stdio: 'ignore' });
    await sleep(1000);
    await drive(t.port, t.prefix, N);
    await sleep(200);
    await stopChild(tracer, 'SIGINT', 10_000);
    const total = /\n\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+/.exec(readFileSync(outFile, 'utf8'));
    return total ? Number(total[1]) / N : NaN;
  } finally {
    await stopChild(child);
  }
}

function run(cmd: string, argv: string[]): void {
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr}`);
}

async function main(): Promise<void> {
  const { child: upstream, hello } = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env);
  const rows: Array<{ name: string; ir: { main: number; all: number }; sys: number }> = [];
  try {
    const targets: Target[] = [];
    const fwdPort = await freePort();
    targets.push({ name: 'http-proxy (bare)', argv: [join(HERE, 'forwarder.js'), String(hello.port), String(fwdPort)], port: fwdPort, prefix: '/bench' });
    for (const [i, dist] of dists.entries()) {
      targets.push(leashTarget(dist, hello.port, await freePort(), await freePort(), `leash${i}`));
      // Builds before the `audit:` key cannot take it: only the last one is measured with it.
      if (auditRedis && i === dists.length - 1) targets.push(leashTarget(dist, hello.port, await freePort(), await freePort(), `leash${i}a`, auditRedis));
    }
    for (const [i, t] of targets.entries()) {
      const tag = `t${i}`;
      rows.push({ name: t.name, ir: await instructions(t, tag), sys: await syscalls(t, tag) });
    }
  } finally {
    await stopChild(upstream);
  }
  const base = rows[0]!;
  console.log(`\n${N} requests per measurement, after ${WARM} warm-up requests; 4 keep-alive connections, one request at a time each\n`);
  const k = (n: number) => Math.round(n).toLocaleString('en');
  console.log('| target | instructions/request, main thread | ÷ bare | all threads | ÷ bare | syscalls/request | ÷ bare |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${k(r.ir.main)} | ${(r.ir.main / base.ir.main).toFixed(3)} | ${k(r.ir.all)} | ${(r.ir.all / base.ir.all).toFixed(3)} | ${r.sys.toFixed(2)} | ${(r.sys / base.sys).toFixed(2)} |`,
    );
  }
}

await main();
