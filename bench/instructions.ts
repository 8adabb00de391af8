import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchSidecarYaml, fmtNodeFlags, freePort, httpGet, leashNodeFlags, median, RawConn, SHIPPED_CLI, sleep, spawnNodeWithHello, stopChild, waitReady } from './lib.js';

/**
 * Instructions and syscalls per proxied request: repeatable figures on a noisy machine
 * (wall-clock figures are only comparable within one quiet, pinned run; instruction
 * counts are comparable across runs and days).
 *
 *   node dist/bench/instructions.js [--requests=N] [--warmup=N] [--processes=N] [--leash-dist=DIR ...]
 *        [--leash-node-flags="--a --b"] [--audit-redis=URL] [--by-function [--top=N]] [--idle-ms=N]
 *        [--connections=N] [--cache-sim] [--cache=host|l2|tlb] [--fn-event=EV[+EV…]]
 *
 * For each target (the bare http-proxy forwarder, then each leash build given as a directory
 * holding a cli.js, default ./dist/leash, the shipped bundle) the proxy runs under `valgrind --tool=callgrind --instr-atstart=no`: start-up
 * and warm-up run uncounted. Warm-up: --warmup requests (default 30000; with the old 3000,
 * V8 was still compiling leash's hot functions with TurboFan in the measured window — under
 * valgrind its compile threads finish late — so leash read ~1.08× the bare forwarder
 * instead of ~1.05×, with a ±15k spread between processes; bench/RESULTS.md, "fourth"
 * session) in 3 parts, each on 4 fresh keep-alive connections that are destroyed at
 * its end, so connection teardown has run (and V8 has re-optimised what a closed socket
 * deoptimises: "wrong map") before the measurement, not inside it. After a 500 ms pause
 * (the proxy handles the last closes) counting is switched on and the counters zeroed
 * (`callgrind_control --instr=on`, `-z`), N
 * requests are sent one at a time on 4 fresh keep-alive connections, which are destroyed;
 * after another 500 ms (their teardown, always inside the window) the counters are dumped
 * (`-d`): Ir ÷ N. Syscalls: the same target without valgrind, `strace -f -c` attached around
 * N requests, once per target.
 *
 * --processes=N (default 1): each target is measured in N fresh processes, interleaved
 * (bare, leash, bare, leash, …), since the figure varies from one process to the next (JIT
 * decisions); printed: the median and the min–max of instructions/request (main thread and
 * all threads), ratios to bare from the medians.
 *
 * leash runs with the image's node flags (bench/lib.ts IMAGE_NODE_FLAGS, the Dockerfile's
 * ENTRYPOINT), as deployed; --leash-node-flags="--a --b" replaces them, --leash-node-flags=
 * (empty) runs leash with none. The bare forwarder runs with the same flags (the floor measured the same way). The flags used are printed.
 * With --audit-redis, the last leash build is measured a second time with `audit.redis` set
 * (per-request `usage` summaries flushed to `<prefix>audit` every 5 s; prefix
 * `leash-bench:`), so the cost of the summaries is the difference within one run.
 *
 * --connections=N (default 4): the keep-alive connections the requests are spread over, one
 * request at a time on each (the saturation phase of bench/proxy.ts uses 10; under callgrind
 * the proxy is slow enough that every connection's next request waits in its socket, so more
 * connections means more requests handled per event-loop turn).
 *
 * --cache-sim: callgrind also simulates caches and branch prediction (`--cache-sim=yes
 * --branch-sim=yes`, its model of the host's L1 and last-level caches) and the main thread's
 * misses per request are printed with their ratios to bare: a repeatable view of why a CPU
 * second buys fewer instructions in one process than in another (slower; the instruction
 * counts are the same).
 *
 * --cache=l2|tlb (implies --cache-sim) replaces that model with one of a named level, so its
 * "LL" column is that level's misses: `l2` is this host's per-core caches as sysfs gives
 * them (its L1s, and its unified L2 as the last level: a core's private cache, which a
 * noisy neighbour cannot evict; 32 KiB L1s and a 512 KiB L2 where sysfs has no answer); `tlb` simulates the
 * translation caches with 4 KiB "lines" (64-entry fully associative L1 iTLB and dTLB, a
 * 2,048-entry 16-way L2 TLB). `host` (default) is callgrind's model of the host's caches.
 *
 * --fn-event=EV[+EV…] (with --by-function and --cache-sim): the by-function tables count
 * these events (summed) instead of instructions, e.g. `--fn-event=ILmr+DLmr+DLmw` for the
 * last-level misses of each function: where the misses land (a function's own footprint,
 * or another's code and data evicting what it needs).
 *
 * With --by-function, every proxy under callgrind runs with `node --perf-basic-prof` (V8
 * writes `/tmp/perf-<pid>.map`: "start size name" per JIT code object), the main thread's
 * dump of the measured interval is read for each function's self cost (`fn=` blocks), and
 * callgrind's unnamed addresses are named from that map. Printed: the top functions by
 * self instructions/request for each target, and per leash build the difference to the
 * bare forwarder (and to the first leash build, if more than one); with --processes, each
 * function's cost is the mean over the target's processes. The map makes V8 do a
 * little more per code object, so compare these tables only within one run.
 */
const HOST = '127.0.0.1';
// A fake key (the bench upstream only checks that it arrives): never a real credential.
const KEY = 'sk-bench-instructions-0123456789abcdef';
const args = process.argv.slice(2);
const N = Number(args.find((a) => a.startsWith('--requests='))?.split('=')[1] ?? 2000);
const WARM = Number(args.find((a) => a.startsWith('--warmup='))?.split('=')[1] ?? 30000);
/** Idle time after the proxy first answers, before the warm-up (V8's memory reducer runs ~8 s after start in an idle process). */
const IDLE_MS = Number(args.find((a) => a.startsWith('--idle-ms='))?.split('=')[1] ?? 0);
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
const BY_FN = args.includes('--by-function');
/** callgrind's cache and branch simulation (`--cache-sim=yes --branch-sim=yes`): misses per request, a model of the host's, the same on every host. */
/** One of cpu0's caches from sysfs as valgrind's "size,associativity,line size", or the fallback. */
function hostCache(level: number, type: string, fallback: string): string {
  const base = '/sys/devices/system/cpu/cpu0/cache';
  try {
    for (const index of readdirSync(base).filter((d) => d.startsWith('index'))) {
      const read = (f: string) => readFileSync(join(base, index, f), 'utf8').trim();
      if (Number(read('level')) !== level || read('type') !== type) continue;
      const size = /^(\d+)K$/.exec(read('size'));
      if (size) return `${Number(size[1]) * 1024},${read('ways_of_associativity')},${read('coherency_line_size')}`;
    }
  } catch {
    // no sysfs cache description (a container without /sys): the fallback
  }
  return fallback;
}
const CACHE_MODEL = args.find((a) => a.startsWith('--cache='))?.slice('--cache='.length) ?? 'host';
const CACHE_MODELS: Record<string, string[]> = {
  host: [],
  l2: [`--I1=${hostCache(1, 'Instruction', '32768,8,64')}`, `--D1=${hostCache(1, 'Data', '32768,8,64')}`, `--LL=${hostCache(2, 'Unified', '524288,8,64')}`],
  tlb: ['--I1=262144,64,4096', '--D1=262144,64,4096', '--LL=8388608,16,4096'],
};
if (!CACHE_MODELS[CACHE_MODEL]) throw new Error(`--cache=${CACHE_MODEL}: one of ${Object.keys(CACHE_MODELS).join(', ')}`);
const CACHE_SIM = args.includes('--cache-sim') || CACHE_MODEL !== 'host';
/** The events the by-function tables count (summed), default instructions. */
const FN_EVENTS = (args.find((a) => a.startsWith('--fn-event='))?.slice('--fn-event='.length) ?? 'Ir').split('+');
if (FN_EVENTS.some((e) => e !== 'Ir') && !CACHE_SIM) throw new Error('--fn-event other than Ir needs --cache-sim');
const FN_UNIT = FN_EVENTS.join(' + ') === 'Ir' ? 'self instructions/request' : `self ${FN_EVENTS.join(' + ')}/request`;
/** Keep-alive connections the requests are spread over (one request at a time on each). */
const CONNS = Math.max(1, Number(args.find((a) => a.startsWith('--connections='))?.split('=')[1] ?? 4) || 4);
const TOP = Number(args.find((a) => a.startsWith('--top='))?.split('=')[1] ?? 40);
const PROCESSES = Math.max(1, Math.floor(Number(args.find((a) => a.startsWith('--processes='))?.split('=')[1] ?? 1)) || 1);
/** Warm-up parts, each on fresh connections destroyed at its end. */
const WARM_PARTS = 3;
/** node flags for every leash process (the image's by default). */
const LEASH_NODE_FLAGS = leashNodeFlags(args);
const auditRedis = args.find((a) => a.startsWith('--audit-redis='))?.slice('--audit-redis='.length);
const dists = args.filter((a) => a.startsWith('--leash-dist=')).map((a) => resolve(a.slice('--leash-dist='.length)));
if (dists.length === 0) dists.push(join(ROOT, dirname(SHIPPED_CLI)));
const TMP = mkdtempSync(join(tmpdir(), 'leash-instr-'));
const env = { ...process.env, BENCH_KEY: KEY, UV_USE_IO_URING: '0' };

interface Target {
  name: string;
  /** node flags (before the script): the same for leash and the bare forwarder. */
  nodeFlags: string[];
  /** node arguments after the flags (script and its args). */
  argv: string[];
  port: number;
  prefix: string;
}

async function drive(port: number, prefix: string, count: number): Promise<void> {
  const conns = await Promise.all(Array.from({ length: CONNS }, () => RawConn.open(HOST, port)));
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
    benchSidecarYaml({
      host: HOST,
      port,
      admin,
      upstreamPort,
      level: 'info',
      allow: ['GET /v1/**'],
      extra: audit ? [`audit: { redis: "${audit}", prefix: "leash-bench:" }`] : [],
    }),
  );
  return { name: `leash ${dist}${audit ? ' +audit' : ''}`, nodeFlags: LEASH_NODE_FLAGS, argv: [join(dist, 'cli.js'), 'sidecar', '--config', cfg], port, prefix: '/bench' };
}

function start(cmd: string, argv: string[], logTag: string): ChildProcess {
  const fd = openSync(join(TMP, `${logTag}.log`), 'w');
  const child = spawn(cmd, argv, { env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return child;
}

/** The warm-up: WARM requests in WARM_PARTS parts, each on fresh connections destroyed at its end. */
async function warmUp(port: number, prefix: string): Promise<void> {
  for (let i = 0; i < WARM_PARTS; i++) await drive(port, prefix, Math.ceil(WARM / WARM_PARTS));
}

interface Ir {
  main: number;
  all: number;
  /** With --cache-sim: every simulated event of the main thread per request (Ir, D1mr, LLd misses, Bcm, …). */
  events?: Record<string, number>;
  byFn?: Map<string, number>;
}

/** Instructions per request: main thread (the event loop) and all threads (GC, compiler, libuv pool). */
async function instructions(t: Target, tag: string): Promise<Ir> {
  const out = join(TMP, `cg-${tag}`);
  const nodeArgs = [...(BY_FN ? ['--perf-basic-prof'] : []), ...t.nodeFlags, ...t.argv];
  // Start-up and warm-up run uninstrumented (`--instr-atstart=no`: valgrind still runs the
  // process, several times faster than with callgrind counting); counting starts with
  // `--instr=on` and the counters are zeroed right before the measured requests.
  const child = start(
    'valgrind',
    ['--tool=callgrind', '--instr-atstart=no', ...(CACHE_SIM ? ['--cache-sim=yes', '--branch-sim=yes', ...CACHE_MODELS[CACHE_MODEL]!] : []), `--callgrind-out-file=${out}.%p`, '--smc-check=all-non-file', '--separate-threads=yes', process.execPath, ...nodeArgs],
    `vg-${tag}`,
  );
  try {
    await waitReady(HOST, t.port, `${t.prefix}/v1/ok`, 180_000);
    if (IDLE_MS > 0) await sleep(IDLE_MS);
    await warmUp(t.port, t.prefix);
    await sleep(500); // the proxy handles the warm-up's closes outside the window
    run('callgrind_control', ['--instr=on', String(child.pid)]);
    run('callgrind_control', ['-z', String(child.pid)]);
    await drive(t.port, t.prefix, N);
    await sleep(500); // and the measured connections' closes inside it
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
  let mainText = '';
  for (const f of files) {
    const text = readFileSync(join(TMP, f), 'utf8');
    const m = /^(?:summary|totals):\s*(\d+)/m.exec(text);
    const ir = Number(m?.[1] ?? 0);
    all += ir;
    if (/\.1-0*1$/.test(f)) {
      main = ir;
      mainText = text;
    }
  }
  const events = CACHE_SIM ? perRequestEvents(mainText) : undefined;
  if (!BY_FN) return { main: main / N, all: all / N, ...(events ? { events } : {}) };
  const perfMap = join('/tmp', `perf-${child.pid}.map`);
  // Kept next to the dumps (the run's temp dir) so a table can be made again from them.
  const kept = join(TMP, `perf-${tag}.map`);
  if (existsSync(perfMap)) renameSync(perfMap, kept);
  const byFn = selfCostByFunction(mainText, existsSync(kept) ? readFileSync(kept, 'utf8') : '');
  for (const [k, v] of byFn) byFn.set(k, v / N);
  return { main: main / N, all: all / N, byFn, ...(events ? { events } : {}) };
}

/** The dump's totals by event name (`events:` names the columns of `summary:`), per request. */
function perRequestEvents(dump: string): Record<string, number> {
  const names = /^events:\s*(.*)$/m.exec(dump)?.[1]?.trim().split(/\s+/) ?? [];
  const values = /^(?:summary|totals):\s*(.*)$/m.exec(dump)?.[1]?.trim().split(/\s+/).map(Number) ?? [];
  return Object.fromEntries(names.map((n, i) => [n, (values[i] ?? 0) / N]));
}

/** JIT code ranges from a perf map ("<hex start> <hex size> <name>"), sorted by start; later entries win on overlap. */
function parsePerfMap(text: string): { starts: bigint[]; ends: bigint[]; names: string[] } {
  const entries: Array<{ start: bigint; end: bigint; name: string; seq: number }> = [];
  let seq = 0;
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]+) ([0-9a-fA-F]+) (.*)$/.exec(line);
    if (!m) continue;
    const start = BigInt(`0x${m[1]}`);
    entries.push({ start, end: start + BigInt(`0x${m[2]}`), name: m[3]!, seq: seq++ });
  }
  // Code moves and its space is reused: for one start address the latest entry is the one
  // that was live at the end (the measured interval is the end of the process's life).
  entries.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.seq - b.seq));
  const dedup: typeof entries = [];
  for (const e of entries) {
    if (dedup.length > 0 && dedup[dedup.length - 1]!.start === e.start) dedup[dedup.length - 1] = e;
    else dedup.push(e);
  }
  return { starts: dedup.map((e) => e.start), ends: dedup.map((e) => e.end), names: dedup.map((e) => e.name) };
}

/** `LazyCompile:*name /abs/.../dist/src/x.js:1:2` → `name src/x.js:1:2` (tiers merged, checkout paths dropped). */
function jsName(raw: string): string {
  let s = raw.replace(/^(?:JS|LazyCompile|Function|Script|Builtin|Stub|BytecodeHandler|RegExp):/, '');
  s = s.replace(/^[*~^+]/, '');
  s = s.replace(/(\s)(?:file:\/\/)?\/\S*\/node_modules\//, '$1');
  s = s.replace(/(\s)(?:file:\/\/)?\/\S*\/dist\/((?:src|bench)\/)/, '$1$2');
  return s || '(anonymous)';
}

/**
 * Self cost per function from a callgrind dump: the cost lines under each `fn=` that do
 * not follow a `calls=` line (those are inclusive costs of a call). Names use callgrind's
 * compression (`fn=(id) name` once, `fn=(id)` after). Unnamed functions (callgrind writes
 * their address) are looked up in the perf map; what is in neither stays `0x… (no symbol)`.
 */
function selfCostByFunction(dump: string, perfMap: string): Map<string, number> {
  const map = parsePerfMap(perfMap);
  const lookup = (addr: bigint): string | undefined => {
    let lo = 0;
    let hi = map.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (map.starts[mid]! <= addr) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi >= 0 && addr < map.ends[hi]! ? map.names[hi] : undefined;
  };
  const names = new Map<string, string>();
  const named = (raw: string): string => {
    const m = /^(?:\?\?\?:)?0x([0-9a-fA-F]+)$/.exec(raw.trim());
    if (!m) return raw.trim();
    const js = lookup(BigInt(`0x${m[1]}`));
    return js ? `JS ${jsName(js)}` : '(JIT/unknown code, not in perf map)';
  };
  const self = new Map<string, number>();
  let fn = '';
  let skipNext = false;
  let eventCols = [0];
  for (const line of dump.split('\n')) {
    if (line.startsWith('events:')) {
      const names = line.slice(7).trim().split(/\s+/);
      eventCols = FN_EVENTS.map((e) => {
        const i = names.indexOf(e);
        if (i < 0) throw new Error(`--fn-event: callgrind recorded no ${e} (events: ${names.join(' ')})`);
        return i;
      });
      continue;
    }
    if (line.startsWith('fn=')) {
      const m = /^fn=(?:\((\d+)\))?\s*(.*)$/.exec(line)!;
      const id = m[1];
      let name = m[2] ?? '';
      if (id !== undefined) {
        if (name) names.set(id, named(name));
        name = names.get(id) ?? name;
      } else name = named(name);
      fn = name;
      skipNext = false;
      continue;
    }
    if (line.startsWith('cfn=')) {
      // Called functions share the id space: a name may be given first here.
      const m = /^cfn=\((\d+)\)\s*(.*)$/.exec(line);
      if (m && m[2] && !names.has(m[1]!)) names.set(m[1]!, named(m[2]));
      continue;
    }
    if (line.startsWith('calls=')) {
      skipNext = true;
      continue;
    }
    const c = line.charCodeAt(0);
    // Cost lines start with a position: a digit, or +, -, * (relative positions).
    if ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 42) {
      if (skipNext) {
        skipNext = false;
        continue;
      }
      const parts = line.trim().split(/\s+/);
      let v = 0;
      for (const col of eventCols) v += Number(parts[1 + col] ?? 0);
      if (fn && v) self.set(fn, (self.get(fn) ?? 0) + v);
    }
  }
  return self;
}

function printByFunction(rows: Array<{ name: string; ir: { main: number; byFn?: Map<string, number> } }>): void {
  const k = (n: number) => Math.round(n).toLocaleString('en');
  const sgn = (n: number) => (n >= 0 ? `+${k(n)}` : k(n));
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  for (const r of rows) {
    if (!r.ir.byFn) continue;
    const sorted = [...r.ir.byFn].sort((a, b) => b[1] - a[1]).slice(0, TOP);
    const named = [...r.ir.byFn.values()].reduce((a, b) => a + b, 0);
    console.log(`\n### ${r.name}: top ${TOP} functions by ${FN_UNIT} (main thread; all functions sum to ${k(named)})\n`);
    console.log(`| function | ${FN_UNIT} |`);
    console.log('| --- | --- |');
    for (const [f, v] of sorted) console.log(`| ${cell(f)} | ${k(v)} |`);
  }
  const diff = (a: (typeof rows)[number], b: (typeof rows)[number]) => {
    const keys = new Set([...a.ir.byFn!.keys(), ...b.ir.byFn!.keys()]);
    const d = [...keys].map((f) => [f, (b.ir.byFn!.get(f) ?? 0) - (a.ir.byFn!.get(f) ?? 0), a.ir.byFn!.get(f) ?? 0, b.ir.byFn!.get(f) ?? 0] as const);
    d.sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
    const total = (r: typeof a) => [...r.ir.byFn!.values()].reduce((x, y) => x + y, 0);
    console.log(`\n### ${b.name} − ${a.name}, by function (${FN_UNIT}, top ${TOP} by |difference|; total ${sgn(total(b) - total(a))})\n`);
    console.log(`| function | ${cell(a.name)} | ${cell(b.name)} | difference |`);
    console.log('| --- | --- | --- | --- |');
    for (const [f, v, x, y] of d.slice(0, TOP)) console.log(`| ${cell(f)} | ${k(x)} | ${k(y)} | ${sgn(v)} |`);
  };
  const leash = rows.slice(1).filter((r) => r.ir.byFn);
  if (!rows[0]?.ir.byFn) return;
  for (const r of leash) diff(rows[0], r);
  if (leash.length > 1) diff(leash[0]!, leash[leash.length - 1]!);
}

/** Simulated cache and branch misses per request, main thread (median over processes), and ratios to bare. */
function printCacheSim(rows: Row[]): void {
  const med = (r: Row, e: string) => median(r.irs.map((i) => i.events?.[e] ?? 0));
  const cols: Array<[string, (r: Row) => number]> = [
    ['I1 misses', (r) => med(r, 'I1mr')],
    ['D1 misses (read + write)', (r) => med(r, 'D1mr') + med(r, 'D1mw')],
    ['LL misses (instr + data)', (r) => med(r, 'ILmr') + med(r, 'DLmr') + med(r, 'DLmw')],
    ['branch mispredicts (cond + indirect)', (r) => med(r, 'Bcm') + med(r, 'Bim')],
  ];
  const base = rows[0]!;
  const model = { host: "its model of the host's L1 and last-level caches", l2: `this host's L1s and L2 as the last level (${CACHE_MODELS.l2!.join(' ')})`, tlb: 'TLBs: 64-entry L1 iTLB/dTLB, 2,048-entry L2 TLB as the last level' }[CACHE_MODEL];
  console.log(`\nSimulated by callgrind (\`--cache-sim=yes --branch-sim=yes\`${CACHE_MODEL === 'host' ? '' : `, --cache=${CACHE_MODEL}`}: ${model}, per request, main thread):\n`);
  console.log(`| target | ${cols.map(([c]) => `${c} | ÷ bare`).join(' | ')} |`);
  console.log(`| --- | ${cols.map(() => '--- | ---').join(' | ')} |`);
  for (const r of rows) console.log(`| ${r.name} | ${cols.map(([, f]) => `${Math.round(f(r)).toLocaleString('en')} | ${(f(r) / f(base)).toFixed(2)}`).join(' | ')} |`);
}

async function syscalls(t: Target, tag: string): Promise<number> {
  const child = start(process.execPath, [...t.nodeFlags, ...t.argv], `st-${tag}`);
  try {
    await waitReady(HOST, t.port, `${t.prefix}/v1/ok`, 30_000);
    await warmUp(t.port, t.prefix);
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

/** Per-function self cost averaged over a target's processes (a function absent from one counts 0 there). */
function meanByFn(irs: Ir[]): Map<string, number> | undefined {
  if (!irs.every((r) => r.byFn)) return undefined;
  const out = new Map<string, number>();
  for (const r of irs) for (const [f, v] of r.byFn!) out.set(f, (out.get(f) ?? 0) + v / irs.length);
  return out;
}

interface Row {
  name: string;
  /** One entry per process, in the order measured. */
  irs: Ir[];
  /** Medians over the processes (byFn: the mean per function). */
  ir: Ir;
  sys: number;
}

async function main(): Promise<void> {
  const { child: upstream, hello } = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env);
  console.error(`node flags of leash and the bare forwarder: ${fmtNodeFlags(LEASH_NODE_FLAGS)}; ${PROCESSES} process(es) per target`);
  const rows: Row[] = [];
  try {
    const targets: Target[] = [];
    const fwdPort = await freePort();
    targets.push({ name: 'http-proxy (bare)', nodeFlags: LEASH_NODE_FLAGS, argv: [join(HERE, 'forwarder.js'), String(hello.port), String(fwdPort)], port: fwdPort, prefix: '/bench' });
    for (const [i, dist] of dists.entries()) {
      targets.push(leashTarget(dist, hello.port, await freePort(), await freePort(), `leash${i}`));
      // Builds before the `audit:` key cannot take it: only the last one is measured with it.
      if (auditRedis && i === dists.length - 1) targets.push(leashTarget(dist, hello.port, await freePort(), await freePort(), `leash${i}a`, auditRedis));
    }
    // Interleaved: process p of every target, then process p + 1 of every target.
    const irs = targets.map(() => [] as Ir[]);
    for (let p = 0; p < PROCESSES; p++) {
      for (const [i, t] of targets.entries()) {
        const ir = await instructions(t, `t${i}p${p}`);
        irs[i]!.push(ir);
        console.error(`${t.name}, process ${p + 1}/${PROCESSES}: ${Math.round(ir.main)} instructions/request main thread, ${Math.round(ir.all)} all threads`);
      }
    }
    for (const [i, t] of targets.entries()) {
      const mine = irs[i]!;
      const byFn = meanByFn(mine);
      const ir: Ir = { main: median(mine.map((r) => r.main)), all: median(mine.map((r) => r.all)), ...(byFn ? { byFn } : {}) };
      rows.push({ name: t.name, irs: mine, ir, sys: await syscalls(t, `t${i}`) });
    }
  } finally {
    await stopChild(upstream);
  }
  const base = rows[0]!;
  console.log(
    `\n${N} requests per measurement, after ${WARM} warm-up requests in ${WARM_PARTS} parts (each on fresh connections, destroyed); ${CONNS} keep-alive connections, one request at a time each`,
  );
  console.log(`node flags of leash and the bare forwarder: ${fmtNodeFlags(LEASH_NODE_FLAGS)}; ${PROCESSES} fresh process(es) per target, interleaved${PROCESSES > 1 ? ': median (min–max)' : ''}; syscalls from one process per target\n`);
  const k = (n: number) => Math.round(n).toLocaleString('en');
  const spread = (r: Row, f: (ir: Ir) => number) => {
    const v = r.irs.map(f);
    return v.length > 1 ? `${k(f(r.ir))} (${k(Math.min(...v))}–${k(Math.max(...v))})` : k(f(r.ir));
  };
  console.log('| target | instructions/request, main thread | ÷ bare | all threads | ÷ bare | syscalls/request | ÷ bare |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${spread(r, (i) => i.main)} | ${(r.ir.main / base.ir.main).toFixed(3)} | ${spread(r, (i) => i.all)} | ${(r.ir.all / base.ir.all).toFixed(3)} | ${r.sys.toFixed(2)} | ${(r.sys / base.sys).toFixed(2)} |`,
    );
  }
  if (CACHE_SIM) printCacheSim(rows);
  if (BY_FN) printByFunction(rows);
}

await main();
