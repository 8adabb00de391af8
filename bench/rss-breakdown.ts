import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchSidecarYaml, freePort, median, SHIPPED_CLI, sleep, spawnNode, spawnNodeWithHello, stopChild, waitReady } from './lib.js';

/**
 * Where `leash sidecar`'s idle RSS above an empty `node` goes (issue 11), per mapping:
 *   node dist/bench/rss-breakdown.js [--runs=N] [--at=MS] [--preload] [--malloc]
 *     --variant="FLAGS"        this build with node FLAGS as well (repeatable); NAME=VALUE
 *                              tokens are environment variables, e.g. "MALLOC_ARENA_MAX=2 --v8-pool-size=1";
 *                              a token dist=DIR runs another build (a dir holding cli.js: dist/leash or dist/src) with the rest
 *     --leash-dist=DIR[,DIR…]  other builds (dirs holding a cli.js: dist/leash or dist/src), same runs
 *     --preload                load dist/bench/rss-preload.js (--import) into every leash and
 *                              print V8's heap statistics and the modules loaded at the reading
 *     --binary                 also split the node binary's resident pages (/proc/PID/pagemap)
 *                              by the symbols they hold (nm): TurboFan, embedded builtins, ICU,
 *                              built-in JS sources (unnamed .rodata), … (needs an unstripped node)
 *     --malloc                 after the reading, gdb calls malloc_stats() and malloc_trim(0)
 *                              in each leash: glibc arenas, and the RSS freed malloc keeps
 * Per process, AT ms (default 15,000) after the proxy first answers: /proc/PID/status and
 * /proc/PID/smaps, the resident kB summed per mapping class: the node binary's .text and
 * .rodata (code touched; built-in JS sources, ICU data), its other segments, the shared
 * libraries, [heap] (glibc's main arena), other anonymous mappings (V8's heap pages, thread
 * arenas and stacks). An empty `node -e 'setInterval(…)'` is read at the same age in each
 * round. All processes of a round run at once; medians over --runs rounds.
 */

const args = process.argv.slice(2);
const RUNS = Number(args.find((a) => a.startsWith('--runs='))?.slice(7) ?? 3);
const AT = Number(args.find((a) => a.startsWith('--at='))?.slice(5) ?? 15_000);
const PRELOAD = args.includes('--preload');
const MALLOC = args.includes('--malloc');
const BINARY = args.includes('--binary');
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
const THIS = join(ROOT, SHIPPED_CLI);
interface Target {
  name: string;
  cli: string;
  nodeArgs: string[];
  env: Record<string, string>;
}
const TARGETS: Target[] = [
  { name: 'this build', cli: THIS, nodeArgs: [], env: {} },
  ...args
    .filter((a) => a.startsWith('--variant='))
    .map((a) => a.slice('--variant='.length))
    .map((v) => {
      // Tokens NAME=VALUE (upper-case name) are environment variables, the rest node flags.
      const tokens = v.split(/\s+/).filter(Boolean);
      const isEnv = (t: string) => /^[A-Z_][A-Z0-9_]*=/.test(t);
      // A token dist=DIR runs that build (a dir holding its cli.js) instead of this one.
      const dist = tokens.find((t) => t.startsWith('dist='))?.slice(5);
      const flags = tokens.filter((t) => !isEnv(t) && !t.startsWith('dist='));
      return { name: dist ? v : `this build, ${v}`, cli: dist ? join(resolve(dist), 'cli.js') : THIS, nodeArgs: flags, env: Object.fromEntries(tokens.filter(isEnv).map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)])) };
    }),
  ...(args.find((a) => a.startsWith('--leash-dist='))?.slice('--leash-dist='.length).split(',') ?? []).map((d) => ({ name: d, cli: join(resolve(d), 'cli.js'), nodeArgs: [], env: {} })),
];
const HOST = '127.0.0.1';
const KEY = `sk-bench-fake-${Math.random().toString(36).slice(2)}`;
const TMP = mkdtempSync(join(tmpdir(), 'leash-rss-'));
const baseEnv = { ...process.env, BENCH_KEY: KEY };
const log = (msg: string) => process.stderr.write(`${msg}\n`);

/** Resident kB per class of mapping, from /proc/PID/smaps. */
type Breakdown = Record<string, number>;
const CLASSES = ['VmRSS', 'RssAnon', 'RssFile', 'node .text', 'node .rodata', 'node other', 'shared libs', '[heap]', 'anon mappings', 'stacks/other'];

function readBreakdown(pid: number): Breakdown {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const b: Breakdown = { VmRSS: kb('VmRSS'), RssAnon: kb('RssAnon'), RssFile: kb('RssFile') };
  for (const c of CLASSES.slice(3)) b[c] = 0;
  let cls = 'stacks/other';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      const [perm, path] = [m[1]!, m[2]!.trim()];
      if (path.endsWith('/node')) cls = perm.includes('x') ? 'node .text' : perm === 'r--p' && !line.startsWith('00400000') ? 'node .rodata' : 'node other';
      else if (path.startsWith('/')) cls = 'shared libs';
      else if (path === '[heap]') cls = '[heap]';
      else if (path === '') cls = 'anon mappings';
      else cls = 'stacks/other';
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (r) b[cls]! += Number(r[1]);
  }
  return b;
}

interface Detail {
  heap?: Record<string, number>;
  spaces?: Array<{ space_name: string; space_size: number; space_used_size: number; physical_space_size: number }>;
  builtins?: string[];
  cjs?: string[];
  malloc?: { arenas: number; systemKb: number; inUseKb: number; trimmedKb: number };
}

function mallocProbe(pid: number, errFile: string): Detail['malloc'] {
  const before = readBreakdown(pid).RssAnon!;
  const gdb = (expr: string) => spawnSync('gdb', ['-p', String(pid), '-batch', '-ex', expr], { stdio: 'ignore', timeout: 60_000 });
  const mark = readFileSync(errFile, 'utf8').length;
  gdb('call (void)malloc_stats()');
  const text = readFileSync(errFile, 'utf8').slice(mark);
  gdb('call (int)malloc_trim(0)');
  const total = /Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)/.exec(text);
  return {
    arenas: (text.match(/^Arena \d+:/gm) ?? []).length,
    systemKb: Number(total?.[1] ?? NaN) / 1024,
    inUseKb: Number(total?.[2] ?? NaN) / 1024,
    trimmedKb: before - readBreakdown(pid).RssAnon!,
  };
}

interface Sym {
  addr: number;
  size: number;
  name: string;
}
const NODE_BIN = realpathSync(process.execPath);
let symbols: Sym[] | undefined;
/** The node binary's sized symbols, by address (nm -S -n -C). */
function nodeSymbols(): Sym[] {
  if (symbols) return symbols;
  const out = spawnSync('nm', ['-S', '-n', '--defined-only', '-C', NODE_BIN], { maxBuffer: 1 << 28, encoding: 'utf8' }).stdout ?? '';
  symbols = [];
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) \S (.*)$/.exec(line);
    if (m) symbols.push({ addr: parseInt(m[1]!, 16), size: parseInt(m[2]!, 16), name: m[3]! });
  }
  symbols.sort((a, b) => a.addr - b.addr);
  return symbols;
}
const GROUPS: Array<[RegExp, string]> = [
  [/compiler::turboshaft/, 'V8 Turboshaft'],
  [/compiler::|disasm::/, 'V8 TurboFan (optimizing JIT)'],
  [/maglev/i, 'V8 Maglev'],
  [/wasm/i, 'V8 wasm'],
  [/^Builtins_/, 'V8 embedded builtins'],
  [/^icudt/, 'ICU data'],
  [/icu_/, 'ICU code'],
  [/internal::(Heap|Scaveng|MarkCompact|Mark|Sweep|Concurrent|Minor|Evacuat|Page|MemoryAllocator)/, 'V8 GC'],
  [/v8::internal::interpreter/, 'V8 interpreter'],
  [/v8::internal::/, 'V8 runtime (other)'],
  [/^v8::/, 'V8 API'],
  [/^node::/, 'node C++'],
  [/^uv_|^uv__/, 'libuv'],
  [/llhttp/, 'llhttp'],
  [/^ada::|ada_/, 'ada (URL)'],
  [/simdutf/, 'simdutf'],
  [/^(EVP_|SSL|ssl|OPENSSL|ossl|BN_|RSA|EC_|ASN1|X509|CRYPTO|OBJ_|ERR_|BIO_|tls|nid_objs|sha|aes|bn_)/, 'OpenSSL'],
  [/ares_/, 'c-ares'],
  [/rotli|kStaticDictionary/, 'brotli'],
];
function groupOf(name: string): string {
  for (const [re, g] of GROUPS) if (re.test(name)) return g;
  return 'other named';
}

/**
 * kB of the node binary resident in PID, by symbol group; a page is shared between the
 * symbols it holds in proportion of their bytes on it. Pages of .rodata with no symbol on
 * them are node's built-in JavaScript sources (lib/*.js, embedded without symbols).
 */
function binaryPages(pid: number): Map<string, number> {
  const syms = nodeSymbols();
  const starts = syms.map((x) => x.addr);
  const upper = (a: number) => {
    let [lo, hi] = [0, starts.length];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid]! <= a) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const groups = new Map<string, number>();
  const add = (g: string, kb: number) => groups.set(g, (groups.get(g) ?? 0) + kb);
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    let base: number | undefined;
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const p = line.split(/\s+/);
      if (p[5] !== NODE_BIN) continue;
      const [start, end] = p[0]!.split('-').map((x) => parseInt(x, 16)) as [number, number];
      const offset = parseInt(p[2]!, 16);
      base ??= start - offset; // first mapping: the ELF's load address (non-PIE node: 0x400000)
      if (!p[1]!.startsWith('r') || p[1]!.includes('w')) continue;
      const n = (end - start) / 4096;
      const buf = Buffer.alloc(n * 8);
      readSync(fd, buf, 0, buf.length, (start / 4096) * 8);
      for (let i = 0; i < n; i++) {
        if (!(buf.readBigUInt64LE(i * 8) >> 63n)) continue;
        const lo = base + offset + i * 4096; // the page's address in the ELF (the text remapped elsewhere too)
        const hi = lo + 4096;
        let j = Math.max(0, upper(lo) - 1);
        const cover = new Map<string, number>();
        for (; j < syms.length && syms[j]!.addr < hi; j++) {
          const x = syms[j]!;
          const ov = Math.min(hi, x.addr + x.size) - Math.max(lo, x.addr);
          if (ov > 0) cover.set(x.name, (cover.get(x.name) ?? 0) + ov);
        }
        const total = [...cover.values()].reduce((a, b) => a + b, 0);
        if (total === 0) add(p[1]!.includes('x') ? 'unnamed code' : offset === 0 ? 'ELF headers, dynamic symbols' : 'built-in JS sources (unnamed .rodata)', 4);
        else for (const [name, b] of cover) add(groupOf(name), (4 * b) / total);
      }
    }
  } finally {
    closeSync(fd);
  }
  return groups;
}

async function emptyNode(): Promise<Breakdown> {
  const child = spawnNode(['-e', 'setInterval(() => {}, 1 << 30)'], baseEnv, 'ignore');
  try {
    await sleep(AT);
    const b = readBreakdown(child.pid!);
    if (BINARY) for (const [g, kb] of binaryPages(child.pid!)) b[`bin: ${g}`] = kb;
    return b;
  } finally {
    await stopChild(child);
  }
}

async function leash(t: Target, upstreamPort: number, tag: string): Promise<{ b: Breakdown; d: Detail }> {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(TMP, `${tag}.yaml`);
  writeFileSync(cfg, benchSidecarYaml({ host: HOST, port, admin, upstreamPort }));
  const dump = join(TMP, `${tag}.json`);
  const errFile = join(TMP, `${tag}.err`);
  const [out, err] = [openSync(join(TMP, `${tag}.log`), 'w'), openSync(errFile, 'w')];
  const pre = PRELOAD ? ['--import', join(HERE, 'rss-preload.js')] : [];
  const child: ChildProcess = spawnNode([...pre, ...t.nodeArgs, t.cli, 'sidecar', '--config', cfg], { ...baseEnv, ...t.env, LEASH_RSS_DUMP: dump }, ['ignore', out, err]);
  closeSync(out);
  closeSync(err);
  try {
    await waitReady(HOST, port, '/bench/v1/ok');
    await sleep(AT);
    const pid = child.pid!;
    const b = readBreakdown(pid);
    if (BINARY) for (const [g, kb] of binaryPages(pid)) b[`bin: ${g}`] = kb;
    let d: Detail = {};
    if (PRELOAD) {
      process.kill(pid, 'SIGUSR2');
      for (let i = 0; i < 50 && !existsSync(dump); i++) await sleep(20);
      d = JSON.parse(readFileSync(dump, 'utf8')) as Detail;
    }
    if (MALLOC) d.malloc = mallocProbe(pid, errFile);
    return { b, d };
  } finally {
    await stopChild(child);
  }
}

const f1 = (kb: number) => (kb / 1024).toFixed(1);
const up = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], baseEnv);
try {
  const empty: Breakdown[] = [];
  const runs = new Map<string, Array<{ b: Breakdown; d: Detail }>>(TARGETS.map((t) => [t.name, []]));
  for (let i = 0; i < RUNS; i++) {
    const [e, ...rs] = await Promise.all([emptyNode(), ...TARGETS.map((t, j) => leash(t, up.hello.port, `r${i}-t${j}`))]);
    empty.push(e!);
    TARGETS.forEach((t, j) => {
      runs.get(t.name)!.push(rs[j]!);
      log(`round ${i + 1} ${t.name}: VmRSS ${f1(rs[j]!.b.VmRSS!)} MB (empty node ${f1(e!.VmRSS!)}), anon ${f1(rs[j]!.b['anon mappings']!)}${rs[j]!.d.heap ? `, V8 used/committed/physical ${f1(rs[j]!.d.heap!.used_heap_size! / 1024)}/${f1(rs[j]!.d.heap!.total_heap_size! / 1024)}/${f1(rs[j]!.d.heap!.total_physical_size! / 1024)}` : ''}${rs[j]!.d.malloc ? `, malloc ${JSON.stringify(rs[j]!.d.malloc)}` : ''}`);
    });
  }
  const med = (bs: Breakdown[], k: string) => median(bs.map((b) => b[k] ?? 0));
  console.log(`node ${process.version}; read ${AT / 1000} s after ready; medians of ${RUNS} rounds; MB`);
  console.log(`| class | empty node | ${TARGETS.map((t) => `${t.name} (− empty)`).join(' | ')} |`);
  console.log(`|---|---|${TARGETS.map(() => '---|').join('')}`);
  const binClasses = [...new Set([...empty, ...[...runs.values()].flat().map((r) => r.b)].flatMap((b) => Object.keys(b).filter((k) => k.startsWith('bin: '))))];
  const delta = (k: string) => med(runs.get(TARGETS[0]!.name)!.map((r) => r.b), k) - med(empty, k);
  binClasses.sort((a, b) => delta(b) - delta(a));
  for (const c of [...CLASSES, ...binClasses]) {
    const e = med(empty, c);
    console.log(`| ${c} | ${f1(e)} | ${TARGETS.map((t) => { const v = med(runs.get(t.name)!.map((r) => r.b), c); return `${f1(v)} (${v - e >= 0 ? '+' : ''}${f1(v - e)})`; }).join(' | ')} |`);
  }
  if (MALLOC) {
    for (const t of TARGETS) {
      const ms = runs.get(t.name)!.map((r) => r.d.malloc!);
      console.log(`${t.name}: glibc arenas ${median(ms.map((m) => m.arenas))}, system ${f1(median(ms.map((m) => m.systemKb)))} MB, in use ${f1(median(ms.map((m) => m.inUseKb)))} MB, malloc_trim(0) frees ${f1(median(ms.map((m) => m.trimmedKb)))} MB RssAnon`);
    }
  }
  if (PRELOAD) {
    for (const t of TARGETS) {
      const ds = runs.get(t.name)!.map((r) => r.d);
      const h = (k: string) => f1(median(ds.map((d) => d.heap![k]!)) / 1024);
      console.log(`${t.name}: V8 heap used ${h('used_heap_size')} / committed ${h('total_heap_size')} / physical ${h('total_physical_size')} MB, malloced ${h('malloced_memory')} (peak ${h('peak_malloced_memory')}), external ${h('external_memory')}`);
      const spaces = ds[0]!.spaces!.filter((s) => s.space_size > 0);
      console.log(`  spaces (round 1, used/physical MB): ${spaces.map((s) => `${s.space_name} ${f1(s.space_used_size / 1024)}/${f1(s.physical_space_size / 1024)}`).join(', ')}`);
      console.log(`  modules (round 1): ${ds[0]!.builtins!.filter((m) => m.startsWith('NativeModule')).length} built-in, ${ds[0]!.cjs!.length} CommonJS files`);
    }
  }
} finally {
  await stopChild(up.child);
  rmSync(TMP, { recursive: true, force: true });
}
