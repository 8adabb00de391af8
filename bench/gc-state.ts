import autocannon from 'autocannon';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchSidecarYaml, canPin, freePort, IMAGE_NODE_FLAGS, interleavedSlices, median, pinSelf, SHIPPED_CLI, sleep, spawnNode, spawnNodeWithHello, stopChild, waitReady, type SlicedProxy } from './lib.js';

/**
 * CPU per request at saturation, leash against the bare http-proxy forwarder, with both
 * processes in the same garbage-collector state (bench/RESULTS.md, "sixth").
 *
 *   node dist/bench/gc-state.js [--runs=N] [--cycles=N] [--idle-ms=N]
 *
 * Why: one full (mark-compact) collection before leash first took load used to leave it
 * ~17 % slower at saturation for the life of the process (Node 20's `process.nextTick` slow
 * path, fixed by src/core/tick-shape.ts). V8's memory reducer runs such collections ~8 s
 * into an idle process, so whether a process met its first load before or after them
 * depends on the run's timing, and `npm run bench` compares whatever state each process is
 * in. Here the state is chosen; "leash, collected ÷ not" near 1.00× says the fix holds.
 *
 * Four proxies alive at once, all pinned to core 1 (this process and the upstream on core
 * 0), all with the image's node flags plus `--no-memory-reducer` (no collection the run does
 * not choose): the bare forwarder, leash, and each again with one forced full collection at
 * 3 s (bench/early-gc.ts). After --idle-ms (default 6000), a 4 s autocannon warm-up per
 * proxy, then --cycles (default 6) cycles of one 1 s slice per proxy, order reversed every
 * cycle; CPU per request is Δ(utime+stime) ÷ requests per slice, ratios are per cycle, the
 * median is printed. --runs (default 2) repeats with fresh processes.
 */

const HOST = '127.0.0.1';
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const CLI = join(HERE, '../..', SHIPPED_CLI);
const arg = (name: string, dflt: number): number => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt);
const RUNS = arg('runs', 2);
const CYCLES = arg('cycles', 6);
const IDLE_MS = arg('idle-ms', 6_000);
const WARM_S = 4;
const KEY = `sk-bench-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const env = { ...process.env, BENCH_KEY: KEY, UV_USE_IO_URING: '0' };
const HEADERS = { authorization: 'Bearer agent-placeholder', 'user-agent': 'leash-bench/1', accept: 'application/json' };
const BASE_FLAGS = [...IMAGE_NODE_FLAGS, '--no-memory-reducer'];
const EARLY_GC = ['--expose-gc', `--import=${join(HERE, 'early-gc.js')}`];

type Proxy = SlicedProxy;

async function startBare(name: string, flags: string[], upstreamPort: number, cpus: string | undefined): Promise<Proxy> {
  const f = await spawnNodeWithHello<{ port: number }>([...flags, join(HERE, 'forwarder.js'), String(upstreamPort)], env, cpus);
  return { name, child: f.child, port: f.hello.port, perReq: [] };
}

async function startLeash(name: string, flags: string[], upstreamPort: number, cpus: string | undefined, dir: string): Promise<Proxy> {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(dir, `${name}.yaml`);
  writeFileSync(cfg, benchSidecarYaml({ host: HOST, port, admin, upstreamPort, level: 'info' }));
  const fd = openSync(join(dir, `${name}.log`), 'w'); // logs to a file, as to a container runtime
  const child = spawnNode([...flags, CLI, 'sidecar', '--config', cfg], env, ['ignore', fd, 'inherit'], cpus);
  closeSync(fd);
  await waitReady(HOST, port, '/bench/v1/ok');
  return { name, child, port, perReq: [] };
}

const load = (p: Proxy, seconds: number) => autocannon({ url: `http://${HOST}:${p.port}/bench/v1/ok`, connections: 10, duration: seconds, headers: HEADERS });

async function run(n: number, upstreamPort: number, cpus: string | undefined): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-gc-state-'));
  const proxies = [
    await startBare('bare', BASE_FLAGS, upstreamPort, cpus),
    await startBare('bare+gc', [...BASE_FLAGS, ...EARLY_GC], upstreamPort, cpus),
    await startLeash('leash', BASE_FLAGS, upstreamPort, cpus, dir),
    await startLeash('leash+gc', [...BASE_FLAGS, ...EARLY_GC], upstreamPort, cpus, dir),
  ];
  try {
    await sleep(IDLE_MS);
    await interleavedSlices(proxies, { warmS: WARM_S, cycles: CYCLES, load });
  } finally {
    for (const p of proxies) await stopChild(p.child);
    rmSync(dir, { recursive: true, force: true });
  }
  const [bare, bareGc, leash, leashGc] = proxies.map((p) => p.perReq) as [number[], number[], number[], number[]];
  const ratio = (a: number[], b: number[]) => median(a.map((v, i) => v / b[i]!));
  const out = {
    'leash ÷ bare, neither collected': ratio(leash, bare),
    'leash ÷ bare, both collected early': ratio(leashGc, bareGc),
    'bare, collected ÷ not': ratio(bareGc, bare),
    'leash, collected ÷ not': ratio(leashGc, leash),
  };
  const us = proxies.map((p) => `${p.name} ${median(p.perReq).toFixed(1)}`).join(', ');
  console.log(`run ${n}: CPU µs/request (median of ${CYCLES} slices): ${us}`);
  for (const [k, v] of Object.entries(out)) console.log(`  ${k.padEnd(36)} ${v.toFixed(3)}×`);
  return out;
}

async function main(): Promise<void> {
  const pin = canPin(2);
  if (pin) pinSelf('0');
  else console.log('NOT pinned (no taskset or < 2 cores): figures are not comparable with pinned runs');
  const up = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env, pin ? '0' : undefined);
  const results: Array<Record<string, number>> = [];
  try {
    for (let i = 1; i <= RUNS; i++) results.push(await run(i, up.hello.port, pin ? '1' : undefined));
  } finally {
    await stopChild(up.child);
  }
  if (RUNS > 1) {
    console.log(`median of ${RUNS} runs:`);
    for (const k of Object.keys(results[0]!)) console.log(`  ${k.padEnd(36)} ${median(results.map((r) => r[k]!)).toFixed(3)}×`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
