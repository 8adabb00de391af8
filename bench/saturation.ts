import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchSidecarYaml, canPin, freePort, IMAGE_NODE_FLAGS, interleavedSlices, median, pinSelf, SHIPPED_CLI, sleep, spawnNode, spawnNodeWithHello, stopChild, waitReady, type SlicedProxy } from './lib.js';

/**
 * CPU per request at saturation of several leash variants against the bare http-proxy
 * forwarder, all alive at once and measured in interleaved slices: how a change on the
 * request path is judged on a noisy machine without a whole `npm run bench`.
 *
 *   node dist/bench/saturation.js [--variant=NAME:DIR:LEVEL ...] [--runs=N] [--cycles=N] [--connections=N] [--idle-ms=N]
 *
 * A variant is a directory holding a cli.js (default the shipped dist/leash) run at a log
 * level (default `info`); default variants: `info:dist/leash:info` and `warn:dist/leash:warn`
 * (what the per-request line costs, interleaved). Every proxy runs with the image's node
 * flags (bench/lib.ts IMAGE_NODE_FLAGS), pinned to core 1 (this process and the upstream
 * on core 0). Per run: fresh processes, idle for --idle-ms (default 0) once all have started, a 4 s autocannon warm-up each, then --cycles
 * (default 8) cycles of one 1 s slice per proxy, order reversed every cycle; CPU per
 * request is Δ(utime+stime) ÷ requests per slice; each variant's ratio to bare is taken per
 * cycle and the median printed, with the median over --runs (default 2).
 */

const HOST = '127.0.0.1';
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
const args = process.argv.slice(2);
const num = (name: string, dflt: number): number => Number(args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt);
const RUNS = num('runs', 2);
const CYCLES = num('cycles', 8);
const CONNECTIONS = num('connections', 10);
/** Idle time after every proxy has started, before the warm-up (npm run bench idles 40 s; V8's memory reducer runs ~8 s into an idle process). */
const IDLE_MS = num('idle-ms', 0);
/** Print each variant's per-cycle ratios (how they change over the process's first minutes). */
const PER_CYCLE = args.includes('--per-cycle');
/** Where a variant's stdout goes: `file` (default), `pipe` (a `cat` on the load core drains it, as a container runtime's shim does), `null`. A variant may name its own as NAME:DIR:LEVEL:SINK. */
const SINK = args.find((a) => a.startsWith('--sink='))?.slice('--sink='.length) ?? 'file';
const WARM_S = 4;
const KEY = `sk-bench-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const env = { ...process.env, BENCH_KEY: KEY, UV_USE_IO_URING: '0' };
const HEADERS = { authorization: 'Bearer agent-placeholder', 'user-agent': 'leash-bench/1', accept: 'application/json' };

interface Variant {
  name: string;
  cli: string;
  level: string;
  sink: string;
}

function variants(): Variant[] {
  const given = args.filter((a) => a.startsWith('--variant=')).map((a) => a.slice('--variant='.length));
  const specs = given.length ? given : ['info::info', 'warn::warn'];
  return specs.map((s) => {
    const [name, dir, level, sink] = s.split(':');
    if (!name) throw new Error(`--variant=${s}: NAME:DIR:LEVEL[:SINK]`);
    const out = sink || SINK;
    if (!['file', 'pipe', 'null'].includes(out)) throw new Error(`--variant=${s}: SINK is file, pipe or null`);
    return { name, cli: dir ? resolve(dir, 'cli.js') : join(ROOT, SHIPPED_CLI), level: level || 'info', sink: out };
  });
}

type Proxy = SlicedProxy;

async function start(v: Variant | undefined, upstreamPort: number, cpus: string | undefined, dir: string): Promise<Proxy> {
  if (v === undefined) {
    const f = await spawnNodeWithHello<{ port: number }>([...IMAGE_NODE_FLAGS, join(HERE, 'forwarder.js'), String(upstreamPort)], env, cpus);
    return { name: 'bare', child: f.child, port: f.hello.port, perReq: [] };
  }
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(dir, `${v.name}.yaml`);
  writeFileSync(cfg, benchSidecarYaml({ host: HOST, port, admin, upstreamPort, level: v.level }));
  const { stdout, drain } = logSink(v.sink, join(dir, `${v.name}.log`), cpus !== undefined);
  const child = spawnNode([...IMAGE_NODE_FLAGS, v.cli, 'sidecar', '--config', cfg], env, ['ignore', stdout, 'inherit'], cpus);
  // Only the child keeps the write end: the file closes here, and `cat` sees EOF (and exits) when leash does.
  if (typeof stdout === 'number') closeSync(stdout);
  else stdout.destroy();
  drain?.once('error', (err) => console.error(`${v.name}: stdout drain failed: ${err.message}`));
  await waitReady(HOST, port, '/bench/v1/ok');
  return { name: v.name, child, port, perReq: [] };
}

/** The variant's stdout: a file, /dev/null, or a pipe into a `cat` (on the load core when the run is pinned). */
function logSink(sink: string, path: string, pinned: boolean): { stdout: number | Writable; drain?: ChildProcess } {
  if (sink === 'null') return { stdout: openSync('/dev/null', 'w') };
  if (sink === 'file') return { stdout: openSync(path, 'w') };
  const drain = pinned ? spawn('taskset', ['-c', '0', 'cat'], { stdio: ['pipe', 'ignore', 'inherit'] }) : spawn('cat', { stdio: ['pipe', 'ignore', 'inherit'] });
  return { stdout: drain.stdin!, drain };
}

const load = (p: Proxy, seconds: number) =>
  autocannon({ url: `http://${HOST}:${p.port}/bench/v1/ok`, connections: CONNECTIONS, duration: seconds, headers: HEADERS });

async function run(n: number, vs: Variant[], upstreamPort: number, cpus: string | undefined): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-saturation-'));
  const proxies: Proxy[] = [];
  try {
    proxies.push(await start(undefined, upstreamPort, cpus, dir));
    for (const v of vs) proxies.push(await start(v, upstreamPort, cpus, dir));
    await sleep(IDLE_MS);
    await interleavedSlices(proxies, { warmS: WARM_S, cycles: CYCLES, load });
  } finally {
    for (const p of proxies) await stopChild(p.child);
    rmSync(dir, { recursive: true, force: true });
  }
  const bare = proxies[0]!.perReq;
  const out: Record<string, number> = {};
  for (const p of proxies.slice(1)) out[p.name] = median(p.perReq.map((v, i) => v / bare[i]!));
  console.log(`run ${n}: CPU µs/request (median of ${CYCLES} slices): ${proxies.map((p) => `${p.name} ${median(p.perReq).toFixed(1)}`).join(', ')}`);
  for (const [k, v] of Object.entries(out)) console.log(`  ${k.padEnd(24)} ÷ bare ${v.toFixed(3)}×`);
  if (PER_CYCLE) for (const p of proxies.slice(1)) console.log(`  ${p.name} ÷ bare per cycle: ${p.perReq.map((v, i) => (v / bare[i]!).toFixed(2)).join(' ')}`);
  return out;
}

async function main(): Promise<void> {
  const vs = variants();
  const pin = canPin(2);
  if (pin) pinSelf('0');
  else console.log('NOT pinned (no taskset or < 2 cores): figures are not comparable with pinned runs');
  console.log(`variants: ${vs.map((v) => `${v.name} = ${v.cli} at ${v.level}, stdout to ${v.sink}`).join('; ')}; ${CONNECTIONS} connections`);
  const up = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env, pin ? '0' : undefined);
  const results: Array<Record<string, number>> = [];
  try {
    for (let i = 1; i <= RUNS; i++) results.push(await run(i, vs, up.hello.port, pin ? '1' : undefined));
  } finally {
    await stopChild(up.child);
  }
  if (RUNS > 1) {
    console.log(`median of ${RUNS} runs:`);
    for (const k of Object.keys(results[0]!)) console.log(`  ${k.padEnd(24)} ÷ bare ${median(results.map((r) => r[k]!)).toFixed(3)}×`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
