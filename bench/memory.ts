import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { benchSidecarYaml, cpuUs, freePort, httpGet, paced, SHIPPED_CLI, sleep, spawnNode, spawnNodeWithHello, stopChild, waitReady } from './lib.js';

/**
 * Idle and peak memory of `leash sidecar` (issue 11), against an empty `node` measured in
 * the same run:
 *   node dist/bench/memory.js                       this build (dist/leash, the shipped bundle)
 *   --leash-dist=DIR[,DIR…]   measure other builds too (e.g. a build of main), same run
 *   --variant="FLAGS"         this build run with node FLAGS as well (repeatable), e.g.
 *                             --variant="--max-semi-space-size=1"
 *   --runs=N                  processes per build (default 3); the median is printed
 *   --quick                   short load phases
 *
 * Per leash process: VmRSS 3 s after it is ready (idle) and VmHWM then (startup peak);
 * then three load phases, GET through the proxy to a local upstream (bench/upstream.ts):
 * 1,000 req/s paced on 10 connections (bench/proxy.ts's latency phase; the same requests
 * for every target, so its CPU/request compares flags on a shared machine), then
 * autocannon saturation on 10 and on 100 connections. Before each phase the peak is reset
 * (/proc/PID/clear_refs 5); VmHWM after it is the peak under that load. Requests/s and the
 * proxy's CPU per request are reported too, because the V8 flags that lower the peak cost
 * CPU. Figures are medians over --runs processes.
 */

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const RUNS = Number(args.find((a) => a.startsWith('--runs='))?.slice(7) ?? 3);
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
interface Target {
  name: string;
  cli: string;
  nodeArgs: string[];
}
const THIS = join(ROOT, SHIPPED_CLI);
const TARGETS: Target[] = [
  { name: 'this build', cli: THIS, nodeArgs: [] },
  ...args.filter((a) => a.startsWith('--variant=')).map((a) => a.slice('--variant='.length)).map((f) => ({ name: `this build, ${f}`, cli: THIS, nodeArgs: f.split(/\s+/).filter(Boolean) })),
  ...(args.find((a) => a.startsWith('--leash-dist='))?.slice('--leash-dist='.length).split(',') ?? []).map((d) => ({ name: d, cli: join(resolve(d), 'cli.js'), nodeArgs: [] })),
];
const HOST = '127.0.0.1';
const KEY = `sk-bench-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const TMP = mkdtempSync(join(tmpdir(), 'leash-memory-'));
const env = { ...process.env, BENCH_KEY: KEY };
/** Load phases: rate undefined = as fast as it goes (autocannon); else paced at that rate (bench/lib.ts). */
const LOAD: Array<{ name: string; connections: number; seconds: number; rate?: number }> = [
  { name: '1k req/s, 10 conns', connections: 10, seconds: QUICK ? 2 : 8, rate: 1_000 },
  { name: 'saturation, 10 conns', connections: 10, seconds: QUICK ? 2 : 5 },
  { name: 'saturation, 100 conns', connections: 100, seconds: QUICK ? 2 : 5 },
];
const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Mem {
  rss: number;
  hwm: number;
  anon: number;
  file: number;
}

/** VmRSS, VmHWM, RssAnon and RssFile in MB. */
function status(pid: number): Mem {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) / 1024;
  return { rss: mb('VmRSS'), hwm: mb('VmHWM'), anon: mb('RssAnon'), file: mb('RssFile') };
}

async function emptyNode(): Promise<Mem> {
  const child = spawnNode(['-e', 'setInterval(() => {}, 1 << 30)'], env, 'ignore');
  await sleep(3_000);
  const m = status(child.pid!);
  await stopChild(child);
  return m;
}

interface Phase {
  /** VmHWM over the phase (reset to VmRSS when it starts) − idle VmRSS. */
  peakOverIdle: number;
  rps: number;
  cpuUsPerReq: number;
  errors: number;
}

interface Run {
  /** Spawn → the proxy answers 200 (polled every 50 ms). */
  readyMs: number;
  idle: Mem;
  startupPeak: number;
  phases: Phase[];
  afterLoad: number;
}

async function leash(t: Target, upstreamPort: number, tag: string): Promise<Run> {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(TMP, `${tag}.yaml`);
  writeFileSync(cfg, benchSidecarYaml({ host: HOST, port, admin, upstreamPort }));
  const fd = openSync(join(TMP, `${tag}.log`), 'w');
  const t0 = performance.now();
  const child: ChildProcess = spawnNode([...t.nodeArgs, t.cli, 'sidecar', '--config', cfg], env, ['ignore', fd, 'inherit']);
  closeSync(fd);
  try {
    await waitReady(HOST, port, '/bench/v1/ok');
    const readyMs = performance.now() - t0;
    await sleep(3_000);
    const pid = child.pid!;
    const idle = status(pid);
    const url = `http://${HOST}:${port}/bench/v1/ok`;
    const headers = { authorization: 'Bearer agent-placeholder' };
    const phases: Phase[] = [];
    for (const l of LOAD) {
      writeFileSync(`/proc/${pid}/clear_refs`, '5'); // VmHWM := VmRSS
      const c0 = cpuUs(pid);
      let total: number;
      let errors: number;
      if (l.rate) {
        const payload = httpGet(HOST, port, '/bench/v1/ok', headers);
        const r = await paced({ host: HOST, port, payload, rate: l.rate, durationMs: l.seconds * 1000, connections: l.connections });
        [total, errors] = [r.ok + r.errors, r.errors];
      } else {
        const r = await autocannon({ url, headers, connections: l.connections, duration: l.seconds });
        [total, errors] = [r.requests.total, r.errors + r.timeouts + r.non2xx];
      }
      phases.push({ peakOverIdle: status(pid).hwm - idle.rss, rps: total / l.seconds, cpuUsPerReq: (cpuUs(pid) - c0) / total, errors });
    }
    await sleep(2_000);
    return { readyMs, idle, startupPeak: idle.hwm, phases, afterLoad: status(pid).rss };
  } finally {
    await stopChild(child);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f1 = (v: number) => v.toFixed(1);

const up = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env);
try {
  const empty: Mem[] = [];
  const runs = new Map<string, Run[]>(TARGETS.map((t) => [t.name, []]));
  // Targets interleaved run by run, so a change in the machine's load hits each alike.
  for (let i = 0; i < RUNS; i++) {
    empty.push(await emptyNode());
    for (const t of TARGETS) {
      const r = await leash(t, up.hello.port, `leash-${i}`);
      log(`${t.name}: idle ${f1(r.idle.rss)} MB (anon ${f1(r.idle.anon)}, file ${f1(r.idle.file)}), startup peak ${f1(r.startupPeak)}, ready after ${r.readyMs.toFixed(0)} ms, ${r.phases.map((p, i) => `${LOAD[i]!.name}: peak +${f1(p.peakOverIdle)} MB, ${p.rps.toFixed(0)} req/s, ${p.cpuUsPerReq.toFixed(0)} µs CPU/req`).join('; ')}, after load ${f1(r.afterLoad)}`);
      runs.get(t.name)!.push(r);
    }
  }
  const e = median(empty.map((m) => m.rss));
  console.log(`node ${process.version}; median of ${RUNS} processes each; load: ${LOAD.map((l) => `${l.name} ${l.seconds} s`).join(', then ')}`);
  console.log(`empty node: ${f1(e)} MB VmRSS (anon ${f1(median(empty.map((m) => m.anon)))}, file ${f1(median(empty.map((m) => m.file)))})`);
  const phaseCols = LOAD.map((l) => `${l.name}: peak − idle / req/s / CPU µs/req`);
  console.log(`| leash | idle VmRSS | idle − empty node (≤ 12) | RssAnon / RssFile | startup peak | ready after (ms) | ${phaseCols.join(' | ')} | after load |`);
  console.log(`|---|---|---|---|---|---|${LOAD.map(() => '---|').join('')}---|`);
  for (const [name, rs] of runs) {
    const m = (fn: (r: Run) => number) => median(rs.map(fn));
    const idle = m((r) => r.idle.rss);
    const phases = LOAD.map((_, i) => `${f1(m((r) => r.phases[i]!.peakOverIdle))} / ${m((r) => r.phases[i]!.rps).toFixed(0)} / ${m((r) => r.phases[i]!.cpuUsPerReq).toFixed(0)}`);
    console.log(`| ${name} | ${f1(idle)} | ${f1(idle - e)} | ${f1(m((r) => r.idle.anon))} / ${f1(m((r) => r.idle.file))} | ${f1(m((r) => r.startupPeak))} | ${m((r) => r.readyMs).toFixed(0)} | ${phases.join(' | ')} | ${f1(m((r) => r.afterLoad))} |`);
    const errors = rs.reduce((a, r) => a + r.phases.reduce((b, p) => b + p.errors, 0), 0);
    if (errors) console.log(`  (${name}: ${errors} failed requests)`);
  }
} finally {
  await stopChild(up.child);
  rmSync(TMP, { recursive: true, force: true });
}
