import type { ChildProcess } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import {
  benchSidecarYaml,
  allowedCpus,
  canPin,
  coreForeignMeter,
  cpuUs,
  fmtNodeFlags,
  foreignMeter,
  freePort,
  IMAGE_NODE_FLAGS,
  leashNodeFlags,
  httpGet,
  median,
  memory,
  once,
  paced,
  pinSelf,
  resetPeakRss,
  RawConn,
  SHIPPED_CLI,
  sleep,
  spawnNode,
  spawnNodeWithHello,
  startRedisServer,
  stats,
  stopChild,
  nowNs,
  waitBudgetLeft,
  waitQuiet,
  waitReady,
  type PacedResult,
  type Stats,
} from './lib.js';
import { summarise, type ProfileSummary } from './profile.js';

/**
 * leash proxy benchmark: direct vs a bare http-proxy forwarder vs leash, in one run, against
 * issue 11's goals, which are ratios to the bare forwarder measured in the same run.
 * Load generator (this process), proxy and upstream are separate processes. The proxy under
 * test runs alone on core 1 (`taskset -c 1`); this process, the upstream and everything else
 * of ours on core 0. Other processes' CPU (all cores, and on the proxy's core) is recorded per phase.
 * Latency @1k, saturation and SSE run in interleaved rounds (direct, bare, leash, then
 * direct, leash, bare, …); each goal's ratio is taken within a round and the median of the
 * rounds is reported, so a neighbour's burst lands on both sides of a pair.
 *
 * Fresh processes: each round starts a FRESH bare forwarder and a FRESH leash (both pinned)
 * and stops them at its end, since CPU per request differs a lot between two processes of
 * the same build; one process per target for the whole run would make every ratio a sample
 * of one pair. In each round, when its leash is D.idleAgeMs old (40 s, after V8's memory reducer; 3 s with --quick),
 * the idle RSS of both is read and their VmHWM reset (clear_refs 5); at the end of the round
 * (2 s after its last phase) RSS and VmHWM are read again: peak − idle per process, reported
 * as the median of the rounds and per round. Round 1 also reads an empty node at the idle
 * instant: the idle goal is round 1's. A fresh process is cold: each target's latency phase
 * starts with D.warmMs at 1k req/s, the round's saturation with D.satRoundWarmS s of it per
 * target. Saturation inside a round is sliced (slicedSaturation): D.satSlices cycles of a
 * 1 s slice per target, order reversed every cycle, the CPU ratio taken per cycle and its
 * median kept; the single phases (warn, profile, rotation) still run one D.satS phase.
 * The single phases run on their own fresh processes: aborts on a fresh forwarder and leash
 * (also the rotation comparison's "leash (again)"), warn, profile and rotation on their own
 * leash each. Peak − idle no longer includes the abort phase (before, one leash served the
 * rounds and the aborts).
 *
 * node flags: leash runs as the image runs it, with bench/lib.ts IMAGE_NODE_FLAGS (the
 * Dockerfile's ENTRYPOINT flags, checked by test/unit/bench-flags.test.ts), in every phase;
 * the bare forwarder runs with the same flags (the floor measured the same way), the empty node with none. The flags used are printed.
 *
 *   npm run bench                 full run (3 rounds, ~7 min)
 *   node dist/bench/proxy.js --quick      short phases, 1 round, for checking the harness
 *   --rounds=N        number of interleaved rounds (default 3; 1 with --quick)
 *   --leash-dist=DIR  measure the cli.js in DIR (another build's dist/leash or dist/src) instead of ./dist/leash
 *   --leash-node-flags="--a --b"   node flags for leash instead of the image's;
 *                     --leash-node-flags= (empty): none
 *   flags: --no-baseline --no-warn --no-profile --no-wait (don't wait for a quiet machine)
 *          --no-pin (don't pin; pinning also needs taskset and ≥ 2 cores)
 *   --audit       also run, in every round's saturation cycles, two more leash (info): one with
 *                 per-request audit summaries (`audit: { redis }` to a private redis-server on
 *                 the load core, flushed every 5 s), and its control, a leash with an idle
 *                 ioredis client to the same Redis preloaded (bench/redis-client.ts) and no
 *                 summaries; report leash+audit ÷ leash+redis (what the summaries cost) and
 *                 leash+redis ÷ leash (what carrying a Redis client costs), same cycles
 *   --rotation    also run leash in rotation mode (`leash dev --config`: in-process authority,
 *                 jwt credential with a 5 s TTL, so it rotates about every 2.5 s) and compare
 *                 its latency @1k and saturation with the static-credential leash of this run
 *
 * Every child runs with UV_USE_IO_URING=0 (libuv's io_uring is off in Node 20's default, and
 * must stay off: it changes the syscall pattern the figures and instructions.ts compare).
 *
 * last-run.json: as before, plus `leashNodeFlags` and `imageNodeFlags`; `rounds[i].memory`
 * (keys `leash`, `http-proxy`: pid, idle, idleAgeMs, end, peakReset, peakOverIdleMB, for that
 * round's processes); `peakOverIdle` ({leash, http-proxy}: medianMB, perRoundMB). Changed
 * meaning: `idle` is round 1's processes' reading; `after` is round 1's processes' end-of-
 * round reading (so after.leash.hwmMB − idle.leash.rssMB is round 1's peak − idle);
 * `goals.peakOverIdleMB` is the median over rounds; `peakReset` is true when every reset
 * succeeded; `auditLines` sums the leash (info) processes of the rounds and the abort phase.
 * `rounds[i].cpuRatioCycles`: leash ÷ bare CPU/request per saturation cycle of the round
 * (`cpuRatio` is their median; before the sliced saturation it was the ratio of one phase each).
 *
 * Prints Markdown tables and writes dist/bench/last-run.json.
 */

const valueFlag = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
const argv = new Set(process.argv.slice(2).filter((a) => !a.startsWith('--leash-dist=') && !a.startsWith('--rounds=') && !a.startsWith('--leash-node-flags=')));
/** node flags of every leash process: the image's (IMAGE_NODE_FLAGS) unless --leash-node-flags says otherwise. */
const LEASH_NODE_FLAGS = leashNodeFlags(process.argv.slice(2));
const sameAsImage = LEASH_NODE_FLAGS.join(' ') === IMAGE_NODE_FLAGS.join(' ');
const QUICK = argv.has('--quick');
const BASELINE = !argv.has('--no-baseline');
const WARN = !argv.has('--no-warn');
const PROFILE = !argv.has('--no-profile');
const WAIT = !argv.has('--no-wait');
const ROTATION = argv.has('--rotation');
const AUDIT = argv.has('--audit');
/** The --audit targets' names: with usage summaries, and its control (an idle Redis client, no summaries). */
const A = 'leash+audit';
const RC = 'leash+redis';
const ROUNDS = Math.max(1, Number(valueFlag('--rounds') ?? (QUICK ? 1 : 3)));
const PIN = !argv.has('--no-pin') && canPin(2);
/** The proxy under test alone on PROXY_CORE; this process, the upstream and the rest on LOAD_CORE. */
const PROXY_CORE = 1;
const LOAD_CORE = 0;
const proxyCpus = PIN ? String(PROXY_CORE) : undefined;
const loadCpus = PIN ? String(LOAD_CORE) : undefined;
/** TTL of the rotating jwt credential (--rotation). */
const ROTATION_TTL = '5s';
/** Other processes' CPU (cores) above which a single (not round) phase is measured again once. */
const NOISY = 0.25;
const D = {
  rounds: ROUNDS,
  warmMs: QUICK ? 500 : 2_000,
  latencyMs: QUICK ? 2_000 : 10_000,
  rate: 1_000,
  connections: 10,
  /** Saturation warm-up (autocannon, same connections), per target and phase: enough for a fresh leash (profile phase) to reach its steady CPU/request. */
  satWarmS: 2,
  satS: QUICK ? 2 : 5,
  /**
   * Within a round, saturation runs in slices: after each target's warm-up (satRoundWarmS),
   * satSlices cycles of one satSliceS slice per target, the order reversed every cycle. The
   * CPU ratio is taken per cycle (slices seconds apart) and the round's is their median:
   * this VM's speed drifts by ±10-20 % over tens of seconds (the upstream's own CPU per
   * request moves with it), which one 5 s phase per target, run one after the other, read
   * as a difference between the proxies.
   */
  satRoundWarmS: QUICK ? 2 : 4,
  satSlices: QUICK ? 2 : 6,
  satSliceS: 1,
  sseRuns: QUICK ? 30 : 150,
  sseDelayMs: 10,
  burstRuns: QUICK ? 10 : 40,
  burstEvents: 500,
  /**
   * Age of the leash process (since it answered) at which idle RSS is read: after V8's memory
   * reducer has run its first mark-compact (10-18 s after start; before it RSS is ~5 MB higher
   * in some processes and not others — bench/rss-breakdown.md).
   */
  idleAgeMs: QUICK ? 3_000 : 40_000,
  aborts: 100,
};
/** Issue 11's goals, relative to the bare forwarder (or to an empty node) of the same run. */
const GOALS = { cpuRatio: 1.15, addedP50Ratio: 1.1, sseFirstPlusUs: 50, sseRelayRatio: 1.0, idleOverEmptyMB: 12, peakOverIdleMB: 12 };

const HOST = '127.0.0.1';
const KEY = `sk-bench-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
/** The leash to measure: the shipped bundle (dist/leash), or --leash-dist=DIR holding a cli.js (another build's dist/leash or dist/src). */
const LEASH_DIST = resolve(process.argv.find((a) => a.startsWith('--leash-dist='))?.slice('--leash-dist='.length) ?? join(ROOT, dirname(SHIPPED_CLI)));
const TMP = mkdtempSync(join(tmpdir(), 'leash-bench-'));
/**
 * Every leash process of a run uses one snapshot of the build, so a rebuild of dist/
 * during the run (others work in the same tree) cannot mix versions or break a phase.
 */
function snapshotBuild(): string {
  const app = join(TMP, 'app');
  cpSync(LEASH_DIST, join(app, 'dist/leash'), { recursive: true });
  cpSync(join(ROOT, 'dist/src'), join(app, 'dist/src'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
  return join(app, 'dist/leash/cli.js');
}
const CLI = snapshotBuild();
/**
 * The profile phase runs tsc's unbundled output of this checkout (the same code, one file
 * per module, dependencies from node_modules), so each frame's file says whether it is
 * leash, a dependency or Node (profile.ts area()); in the bundle they share chunk files.
 */
const PROFILE_CLI = join(dirname(dirname(CLI)), 'src/cli.js');
/** Every child's environment. UV_USE_IO_URING=0: nothing may turn libuv's io_uring on for the proxies. */
const env: NodeJS.ProcessEnv = { ...process.env, BENCH_KEY: KEY, UV_USE_IO_URING: '0' };
const t0 = Date.now();
const log = (msg: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);

interface Target {
  name: string;
  port: number;
  prefix: string;
  auth: string;
  pid: number | undefined; // the proxy process, if any
}
const reqHeaders = (t: Target) => ({ authorization: t.auth, 'user-agent': 'leash-bench/1', accept: 'application/json' });
const okPayload = (t: Target) => httpGet(HOST, t.port, `${t.prefix}/ok`, reqHeaders(t));
const ssePayload = (t: Target, query: string) => httpGet(HOST, t.port, `${t.prefix}/sse?${query}`, { ...reqHeaders(t), accept: 'text/event-stream' });

// ---------------------------------------------------------------- processes

interface Leash {
  child: ChildProcess;
  pid: number;
  port: number;
  logPath: string;
  stderr: string[];
}

async function startLeash(tag: string, upstreamPort: number, level: string, nodeArgs: string[] = [], cli = CLI, extra: readonly string[] = []): Promise<Leash> {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(TMP, `${tag}.yaml`);
  writeFileSync(cfg, benchSidecarYaml({ host: HOST, port, admin, upstreamPort, level, extra }));
  // Logs go to a file, as they would to a container runtime's log pipe.
  const logPath = join(TMP, `${tag}.log`);
  const fd = openSync(logPath, 'w');
  const child = spawnNode([...LEASH_NODE_FLAGS, ...nodeArgs, cli, 'sidecar', '--config', cfg], env, ['ignore', fd, 'pipe'], proxyCpus);
  closeSync(fd);
  children.push(child);
  if (PIN) onProxyCore.push(child);
  const stderr: string[] = [];
  child.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  await waitReady(HOST, port, '/bench/v1/ok').catch((err: Error) => {
    throw new Error(`${err.message}\n${stderr.join('')}`);
  });
  return { child, pid: child.pid!, port, logPath, stderr };
}

/**
 * leash in rotation mode: `leash dev --config` (authority + sidecar in one process, the
 * sidecar bootstraps over mTLS and leases a jwt of TTL ROTATION_TTL, refreshed at ~50 %).
 * The bench upstream does not verify the JWT; what counts is that no request fails while
 * the credential changes under load.
 */
async function startLeashRotation(tag: string, upstreamPort: number, level: string): Promise<Leash & { admin: number }> {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(TMP, `${tag}.json`);
  writeFileSync(
    cfg,
    JSON.stringify({
      authority: {
        trustDomain: 'leash.local',
        hostnames: [HOST],
        log: { level },
        credentials: { bench: { kind: 'jwt', audience: 'bench-api', scopes: ['bench:read'], ttl: ROTATION_TTL } },
        policies: [{ identities: ['join:dev-*'], credentials: ['bench'], maxTtl: '1h' }],
      },
      sidecar: {
        listen: `${HOST}:${port}`,
        admin: `${HOST}:${admin}`,
        shutdown: { grace: '1s' },
        log: { level },
        routes: {
          bench: {
            upstream: `http://${HOST}:${upstreamPort}`,
            credential: 'bench',
            inject: { header: 'authorization', format: 'Bearer {{credential}}' },
            allow: ['GET /v1/**', 'POST /v1/**'],
          },
        },
      },
    }),
  );
  const logPath = join(TMP, `${tag}.log`);
  const fd = openSync(logPath, 'w');
  const child = spawnNode([...LEASH_NODE_FLAGS, CLI, 'dev', '--config', cfg], env, ['ignore', fd, 'pipe'], proxyCpus);
  closeSync(fd);
  children.push(child);
  if (PIN) onProxyCore.push(child);
  const stderr: string[] = [];
  child.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  await waitReady(HOST, port, '/bench/v1/ok').catch((err: Error) => {
    throw new Error(`${err.message}\n${stderr.join('')}`);
  });
  return { child, pid: child.pid!, port, logPath, stderr, admin };
}

/** leash_credential_rotations_total{route="bench",result=…} from a sidecar's admin /metrics. */
async function rotationCount(adminPort: number): Promise<{ success: number; failure: number }> {
  const text = (await once(HOST, adminPort, '/metrics')).body.toString();
  const get = (result: string) => Number(new RegExp(`^leash_credential_rotations_total\\{[^}]*result="${result}"[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return { success: get('success'), failure: get('failure') };
}

// ---------------------------------------------------------------- phases

/** Other load during a phase, in cores: anything not ours on the whole machine, and on the proxy's core. */
interface Load {
  foreignCores: number;
  /** CPU on the proxy's core not used by the proxies pinned there (undefined when not pinned). */
  proxyCoreForeign: number | undefined;
}

function loadMeter(): () => Load {
  const all = foreignMeter(ourPids);
  const core = PIN ? coreForeignMeter(PROXY_CORE, () => liveOf(onProxyCore)) : undefined;
  return () => ({ foreignCores: all(), proxyCoreForeign: core?.() });
}

const fmtLoad = (l: Load): string => `${l.foreignCores.toFixed(2)}${l.proxyCoreForeign === undefined ? '' : ` (core ${PROXY_CORE}: ${l.proxyCoreForeign.toFixed(2)})`}`;

type Latency = PacedResult & { proxyCpuUsPerReq: number | undefined } & Load;

/**
 * Runs a phase; if other processes were busy during it, waits for quiet and runs it once more,
 * keeping the quieter one. Only for phases outside the rounds: within a round, a repeat would
 * break the pairing the ratios rely on.
 */
async function quietly<T extends Load>(name: string, repeat: boolean, phase: () => Promise<T>): Promise<T> {
  const a = await phase();
  if (!repeat || !WAIT || a.foreignCores <= NOISY || waitBudgetLeft() < 3_000) return a;
  log(`${name}: other processes used ${a.foreignCores.toFixed(2)} cores during the phase; repeating once`);
  await waitQuiet(ourPids, NOISY / 2, 15_000, log);
  const b = await phase();
  return b.foreignCores < a.foreignCores ? b : a;
}

async function latencyAt1k(t: Target, repeat = true): Promise<Latency> {
  await paced({ host: HOST, port: t.port, payload: okPayload(t), rate: D.rate, durationMs: D.warmMs, connections: D.connections });
  return quietly(`${t.name} @1k`, repeat, async () => {
    const c0 = t.pid ? cpuUs(t.pid) : 0;
    const load = loadMeter();
    const r = await paced({ host: HOST, port: t.port, payload: okPayload(t), rate: D.rate, durationMs: D.latencyMs, connections: D.connections });
    const l = load();
    const proxyCpuUsPerReq = t.pid ? (cpuUs(t.pid) - c0) / r.sent : undefined;
    log(
      `${t.name.padEnd(12)} @1k: p50 ${r.latency.p50.toFixed(0)} µs p99 ${r.latency.p99.toFixed(0)} µs, ${r.achievedRate.toFixed(0)} req/s, errors ${r.errors}, queued ${r.queued}, reopened ${r.reopened}, others ${fmtLoad(l)} cores`,
    );
    return { ...r, proxyCpuUsPerReq, ...l };
  });
}

interface Saturation extends Load {
  rps: number;
  total: number;
  errors: number;
  non2xx: number;
  latencyP50Ms: number;
  proxyCpuUsPerReq: number | undefined;
  upstreamCpuUsPerReq: number;
  proxyCores: number | undefined;
}

/**
 * Saturation within a round (D.satSlices): every target warmed up, then cycles of one slice
 * per target, alternating the order, all proxies alive and warm throughout. Returns each
 * target's totals over its slices and each cycle's CPU µs/request per proxy target.
 */
async function slicedSaturation(targets: Target[], upstreamPid: number): Promise<{ byTarget: Record<string, Saturation>; cycles: Array<Record<string, number>> }> {
  const url = (t: Target) => `http://${HOST}:${t.port}${t.prefix}/ok`;
  for (const t of targets) await autocannon({ url: url(t), connections: D.connections, duration: D.satRoundWarmS, headers: reqHeaders(t) });
  type Acc = { total: number; errors: number; non2xx: number; p50: number[]; proxyUs: number; upUs: number; wallMs: number; foreign: number; core: number | undefined };
  const acc = new Map<string, Acc>(targets.map((t) => [t.name, { total: 0, errors: 0, non2xx: 0, p50: [], proxyUs: 0, upUs: 0, wallMs: 0, foreign: 0, core: PIN ? 0 : undefined }]));
  const cycles: Array<Record<string, number>> = [];
  for (let c = 0; c < D.satSlices; c++) {
    const cycle: Record<string, number> = {};
    for (const t of c % 2 === 0 ? targets : [...targets].reverse()) {
      const load = loadMeter();
      const [p0, u0, w0] = [t.pid ? cpuUs(t.pid) : 0, cpuUs(upstreamPid), performance.now()];
      const r = await autocannon({ url: url(t), connections: D.connections, duration: D.satSliceS, headers: reqHeaders(t) });
      const [p1, u1, w1] = [t.pid ? cpuUs(t.pid) : 0, cpuUs(upstreamPid), performance.now()];
      const l = load();
      const a = acc.get(t.name)!;
      a.total += r.requests.total;
      a.errors += r.errors + r.timeouts;
      a.non2xx += r.non2xx;
      a.p50.push(r.latency.p50);
      a.proxyUs += p1 - p0;
      a.upUs += u1 - u0;
      a.wallMs += w1 - w0;
      // Other load, time-weighted over the slices.
      a.foreign += l.foreignCores * (w1 - w0);
      if (a.core !== undefined) a.core += (l.proxyCoreForeign ?? 0) * (w1 - w0);
      if (t.pid) cycle[t.name] = (p1 - p0) / r.requests.total;
    }
    cycles.push(cycle);
  }
  const byTarget: Record<string, Saturation> = {};
  for (const t of targets) {
    const a = acc.get(t.name)!;
    const out: Saturation = {
      rps: a.total / (D.satSlices * D.satSliceS),
      total: a.total,
      errors: a.errors,
      non2xx: a.non2xx,
      latencyP50Ms: median(a.p50),
      proxyCpuUsPerReq: t.pid ? a.proxyUs / a.total : undefined,
      upstreamCpuUsPerReq: a.upUs / a.total,
      proxyCores: t.pid ? a.proxyUs / (a.wallMs * 1000) : undefined,
      foreignCores: a.foreign / a.wallMs,
      proxyCoreForeign: a.core === undefined ? undefined : a.core / a.wallMs,
    };
    byTarget[t.name] = out;
    const per = t.pid ? ` (per slice: ${cycles.map((c) => c[t.name]!.toFixed(0)).join(', ')})` : '';
    log(
      `${t.name.padEnd(12)} saturation: ${out.rps.toFixed(0)} req/s, proxy CPU ${out.proxyCpuUsPerReq?.toFixed(0) ?? '-'} µs/req${per} (${out.proxyCores?.toFixed(2) ?? '-'} cores), errors ${out.errors}, non2xx ${out.non2xx}, others ${fmtLoad(out)} cores`,
    );
  }
  return { byTarget, cycles };
}

async function saturation(t: Target, upstreamPid: number, repeat = true): Promise<Saturation> {
  const url = `http://${HOST}:${t.port}${t.prefix}/ok`;
  const headers = reqHeaders(t);
  await autocannon({ url, connections: D.connections, duration: D.satWarmS, headers });
  return quietly(`${t.name} saturation`, repeat, async () => {
    const load = loadMeter();
    const [p0, u0, w0] = [t.pid ? cpuUs(t.pid) : 0, cpuUs(upstreamPid), performance.now()];
    const r = await autocannon({ url, connections: D.connections, duration: D.satS, headers });
    const [p1, u1, w1] = [t.pid ? cpuUs(t.pid) : 0, cpuUs(upstreamPid), performance.now()];
    const l = load();
    const total = r.requests.total;
    const out: Saturation = {
      rps: total / D.satS,
      total,
      errors: r.errors + r.timeouts,
      non2xx: r.non2xx,
      latencyP50Ms: r.latency.p50,
      proxyCpuUsPerReq: t.pid ? (p1 - p0) / total : undefined,
      upstreamCpuUsPerReq: (u1 - u0) / total,
      proxyCores: t.pid ? (p1 - p0) / ((w1 - w0) * 1000) : undefined,
      ...l,
    };
    log(
      `${t.name.padEnd(12)} saturation: ${out.rps.toFixed(0)} req/s, proxy CPU ${out.proxyCpuUsPerReq?.toFixed(0) ?? '-'} µs/req (${out.proxyCores?.toFixed(2) ?? '-'} cores), errors ${out.errors}, non2xx ${out.non2xx}, others ${fmtLoad(l)} cores`,
    );
    return out;
  });
}

/** Sequential SSE requests, targets interleaved run by run. */
interface Sse {
  /** Request written → first event read: what the agent waits (includes the request's trip). */
  first: Stats;
  headers: Stats;
  /** Upstream's write of the event → client's read of it (one clock, CLOCK_MONOTONIC). */
  relay: Stats;
  /** A burst of D.burstEvents events: request written → last event read (includes the request's trip). */
  last: Stats;
  /**
   * The same bursts, first event read → last event read: the relay rate of the stream
   * itself, without the request's trip through the proxy (which `first` and the added
   * p50 at 1k measure).
   */
  span: Stats;
}

async function sse(targets: Target[]): Promise<{ byTarget: Map<string, Sse>; load: Load }> {
  const conns = await Promise.all(targets.map((t) => RawConn.open(HOST, t.port)));
  const first = targets.map(() => [] as number[]);
  const heads = targets.map(() => [] as number[]);
  const relay = targets.map(() => [] as number[]);
  const last = targets.map(() => [] as number[]);
  const span = targets.map(() => [] as number[]);
  const load = loadMeter();
  for (let i = 0; i < D.sseRuns + 10; i++) {
    for (let j = 0; j < targets.length; j++) {
      const r = await conns[j]!.request(ssePayload(targets[j]!, `delay=${D.sseDelayMs}&mode=once`));
      if (i < 10) continue; // warm-up
      if (r.status !== 200 || r.firstEventUs === undefined) throw new Error(`SSE via ${targets[j]!.name}: status ${r.status}`);
      first[j]!.push(r.firstEventUs);
      heads[j]!.push(r.headersUs);
      const sent = /"t":(\d+)/.exec(r.body.toString('latin1'))?.[1];
      if (sent) relay[j]!.push(Number(r.firstEventAtNs! - BigInt(sent)) / 1000);
    }
  }
  for (let i = 0; i < D.burstRuns + 3; i++) {
    for (let j = 0; j < targets.length; j++) {
      const r = await conns[j]!.request(ssePayload(targets[j]!, `delay=0&mode=burst&n=${D.burstEvents}`));
      if (i < 3) continue; // warm-up
      const events = r.body.toString('latin1').split('\n\n').length - 1;
      if (r.status !== 200 || events < D.burstEvents) throw new Error(`SSE burst via ${targets[j]!.name}: status ${r.status}, ${events} events`);
      last[j]!.push(r.latencyUs);
      span[j]!.push(r.afterFirstEventUs!);
    }
  }
  const l = load();
  for (const c of conns) c.destroy();
  const out = new Map<string, Sse>();
  targets.forEach((t, j) => {
    const r = { first: stats(first[j]!), headers: stats(heads[j]!), relay: stats(relay[j]!), last: stats(last[j]!), span: stats(span[j]!) };
    out.set(t.name, r);
    log(
      `${t.name.padEnd(12)} SSE first event p50 ${(r.first.p50 / 1000).toFixed(3)} ms (delay ${D.sseDelayMs} ms), event relay p50 ${r.relay.p50.toFixed(0)} µs, last of ${D.burstEvents} events p50 ${(r.last.p50 / 1000).toFixed(3)} ms (${(r.span.p50 / 1000).toFixed(3)} ms after the first)`,
    );
  });
  log(`SSE: others ${fmtLoad(l)} cores`);
  return { byTarget: out, load: l };
}

interface AbortResult {
  opened: number;
  upstreamSaw: number;
  cancelledWithin1s: number;
  delayMs: Stats;
}

/** N concurrent SSE streams; once each has events flowing, the client drops it. Does the upstream see it go? */
async function abortPropagation(t: Target, upstreamPort: number, tag: string): Promise<AbortResult> {
  const conns = await Promise.all(Array.from({ length: D.aborts }, () => RawConn.open(HOST, t.port)));
  const flowing = await Promise.all(
    conns.map(
      (c, i) =>
        new Promise<boolean>((res) => {
          const timer = setTimeout(() => res(false), 5_000);
          c.request(ssePayload(t, `id=${tag}-${i}&delay=${D.sseDelayMs}&mode=forever`), () => {
            clearTimeout(timer);
            res(true);
          }).catch(() => res(false));
        }),
    ),
  );
  await sleep(250); // mid-stream: a couple more events have gone through
  const abortAt = conns.map((c) => {
    const at = nowNs();
    c.destroy();
    return at;
  });
  await sleep(1_200);
  const s = JSON.parse((await once(HOST, upstreamPort, '/__stats')).body.toString()) as {
    streams: Record<string, { openedNs: string; closedNs?: string; finished?: boolean }>;
  };
  let saw = 0;
  let within = 0;
  const delays: number[] = [];
  conns.forEach((_c, i) => {
    const rec = s.streams[`${tag}-${i}`];
    if (!rec) return;
    saw++;
    if (rec.closedNs === undefined) return;
    const d = Number(BigInt(rec.closedNs) - abortAt[i]!) / 1e6;
    delays.push(d);
    if (d <= 1_000) within++;
  });
  const out = { opened: flowing.filter(Boolean).length, upstreamSaw: saw, cancelledWithin1s: within, delayMs: stats(delays) };
  log(`${t.name.padEnd(12)} aborts: ${within}/${D.aborts} upstream streams closed within 1 s (flowing ${out.opened}, p50 ${out.delayMs.p50.toFixed(2)} ms)`);
  return out;
}

async function profileLeash(upstreamPort: number): Promise<{ summary: ProfileSummary; rps: number; cpuUsPerReq: number }> {
  const dir = join(TMP, 'prof');
  mkdirSync(dir, { recursive: true });
  const l = await startLeash('leash-prof', upstreamPort, 'info', ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'], PROFILE_CLI);
  const t: Target = { name: 'leash (prof)', port: l.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: l.pid };
  const upPid = upstreamPid;
  const s = await saturation(t, upPid);
  await stopChild(l.child);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no .cpuprofile written');
  return { summary: summarise(join(dir, file)), rps: s.rps, cpuUsPerReq: s.proxyCpuUsPerReq! };
}

/** An empty node process (`node -e "setInterval(()=>{},1e6)"`), same env and pinning as the proxies: the RSS baseline. */
function startEmptyNode(): ChildProcess {
  const child = spawnNode(['-e', 'setInterval(()=>{},1e6)'], env, 'ignore', proxyCpus);
  children.push(child);
  return child;
}

// ---------------------------------------------------------------- main

let upstreamPid = 0;
/** Every process this run started, so a failure never leaves one behind. */
const children: ChildProcess[] = [];
/** The proxies, pinned to PROXY_CORE (when pinning). */
const onProxyCore: ChildProcess[] = [];
const liveOf = (list: ChildProcess[]): number[] => list.filter((c) => c.exitCode === null && c.signalCode === null && c.pid !== undefined).map((c) => c.pid!);
const ourPids = (): number[] => liveOf(children);
/** --audit: the private Redis the leash+audit targets write their usage summaries to (on the load core). */
let auditRedis: { url: string; pid: number } | undefined;

/** One interleaved round: the same phases for every target, back to back. */
interface Round {
  order: string[];
  latency: Record<string, Latency>;
  saturation: Record<string, Saturation>;
  sse: Record<string, Sse>;
  sseLoad: Load;
  /** This round's fresh proxy processes (keys `leash`, `http-proxy`): idle and end-of-round memory. */
  memory: Record<string, ProcMemory>;
  /** Issue 11's comparisons within this round (undefined without the bare forwarder). */
  /** Median over the round's saturation cycles of leash ÷ bare CPU/request (slicedSaturation). */
  cpuRatio: number | undefined;
  cpuRatioCycles: number[] | undefined;
  addedP50Ratio: number | undefined;
  sseFirstPlusUs: number | undefined;
  /** Informational: time to the last event, request's trip included. */
  sseLastRatio: number | undefined;
  /** The goal's: first event → last event of the bursts (Sse.span). */
  sseRelayRatio: number | undefined;
  /** --audit: median over the saturation cycles of leash+audit ÷ leash+redis CPU/request (the summaries), and the ratio of their req/s. */
  auditCpuRatio?: number;
  auditCpuRatioCycles?: number[];
  auditRpsRatio?: number;
  /** --audit: the same for leash+redis ÷ leash (an idle Redis client in the process). */
  redisCpuRatio?: number;
  redisRpsRatio?: number;
}

/** /proc readings of one process (lib.ts memory()). */
type Mem = ReturnType<typeof memory>;

/** Memory of one of a round's fresh proxy processes. */
interface ProcMemory {
  pid: number;
  /** Read when this round's leash was D.idleAgeMs old (the forwarder, started just before it, a little older). */
  idle: Mem;
  idleAgeMs: number;
  /** Read at the end of the round, 2 s after its last phase: settled RSS, and VmHWM (the peak since idle when peakReset). */
  end: Mem;
  /** VmHWM was reset right after the idle reading. */
  peakReset: boolean;
  /** end.hwmMB − idle.rssMB. */
  peakOverIdleMB: number;
}

/** A fresh bare forwarder (unless --no-baseline) and a fresh leash (info), both on the proxy core. */
interface Pair {
  fwd: Target | undefined;
  fwdChild: ChildProcess | undefined;
  leash: Target;
  l: Leash;
  /** --audit: a leash (info) writing usage summaries to auditRedis, and its control (an idle client to it, no summaries). */
  audit: { t: Target; l: Leash; control: Target; lc: Leash } | undefined;
  /** performance.now() when leash first answered: the age of the pair. */
  readyAt: number;
}

async function startPair(tag: string, upstreamPort: number, withAudit = true): Promise<Pair> {
  let fwd: Target | undefined;
  let fwdChild: ChildProcess | undefined;
  if (BASELINE) {
    // The floor measured the same way: the forwarder runs with leash's node flags.
    const f = await spawnNodeWithHello<{ port: number }>([...LEASH_NODE_FLAGS, join(HERE, 'forwarder.js'), String(upstreamPort)], env, proxyCpus);
    children.push(f.child);
    if (PIN) onProxyCore.push(f.child);
    fwdChild = f.child;
    fwd = { name: 'http-proxy', port: f.hello.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: f.child.pid! };
  }
  const l = await startLeash(tag, upstreamPort, 'info');
  const leash: Target = { name: 'leash', port: l.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: l.pid };
  let audit: Pair['audit'];
  if (auditRedis && withAudit) {
    const lc = await startLeash(`${tag}-redis`, upstreamPort, 'info', ['--import', join(HERE, 'redis-client.js')]);
    const la = await startLeash(`${tag}-audit`, upstreamPort, 'info', [], CLI, [`audit: { redis: "${auditRedis.url}", flushInterval: 5s }`]);
    const target = (name: string, x: Leash): Target => ({ name, port: x.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: x.pid });
    audit = { t: target(A, la), l: la, control: target(RC, lc), lc };
  }
  return { fwd, fwdChild, leash, l, audit, readyAt: performance.now() };
}

async function stopPair(p: Pair): Promise<void> {
  if (p.fwdChild) await stopChild(p.fwdChild);
  await stopChild(p.l.child);
  if (p.audit) await Promise.all([stopChild(p.audit.l.child), stopChild(p.audit.lc.child)]);
}

/** --audit: the usage entries in the audit Redis' stream, and the requests they count (usageFields(): flat field/value pairs). */
async function readUsageEntries(url: string): Promise<{ usage: number; requests: number }> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const entries = (await redis.xrange('leash:audit', '-', '+')) as Array<[string, string[]]>;
  await redis.quit();
  const out = { usage: 0, requests: 0 };
  for (const [, fields] of entries) {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
    if (f.get('event') !== 'usage') continue;
    out.usage++;
    out.requests += Number(f.get('count') ?? 0);
  }
  return out;
}

/** "request" audit lines a leash (info) wrote to its log. */
const auditLinesOf = (l: Leash): number => readFileSync(l.logPath, 'utf8').split('\n').filter((s) => s.includes('"event":"request"')).length;

async function main(): Promise<void> {
  const pinnedSelf = PIN && loadCpus !== undefined ? pinSelf(loadCpus) : false;
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? '?';
  const machine = { nproc: cpus().length, cpu: cpuModel, node: process.version, date: new Date().toISOString() };
  log(`machine: ${machine.nproc} cores, ${machine.cpu}, node ${machine.node}${QUICK ? ' (QUICK run)' : ''}; leash from ${LEASH_DIST}; ${ROUNDS} round(s)`);
  log(`leash node flags: ${fmtNodeFlags(LEASH_NODE_FLAGS)}${sameAsImage ? " (the image's)" : ` (the image's: ${fmtNodeFlags(IMAGE_NODE_FLAGS)})`}; the bare forwarder runs with the same flags, the empty node with none`);

  const up = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env, loadCpus);
  upstreamPid = up.child.pid!;
  children.push(up.child);
  const direct: Target = { name: 'direct', port: up.hello.port, prefix: '/v1', auth: `Bearer ${KEY}`, pid: undefined };
  if (AUDIT) {
    const dir = join(TMP, 'redis');
    mkdirSync(dir);
    const redis = await startRedisServer(HOST, dir, loadCpus);
    children.push(redis.child);
    auditRedis = redis;
    env.LEASH_BENCH_REDIS_URL = redis.url; // read only by bench/redis-client.js, preloaded into the control
    log(`--audit: redis-server pid ${redis.pid} at ${redis.url} (load core) for the leash+audit targets`);
  }
  const F = BASELINE ? 'http-proxy' : undefined;

  // ------------------------------------------------------------ interleaved rounds
  // Every round starts a fresh forwarder and a fresh leash and stops them at its end: CPU per
  // request differs a lot between two processes of the same build, so one process per target
  // for the whole run would make every ratio a sample of one pair of processes.
  const rounds: Round[] = [];
  let pinning: { pinned: boolean; proxyCore: number | undefined; allowed: Record<string, string>; pinnedSelf: boolean; uvUseIoUring: string | undefined } | undefined;
  let idle: { leash: Mem; fwd: Mem | undefined; ageMs: number; leashTraceMB: number[] } | undefined;
  let emptyNode: Mem | undefined;
  let quietAtStart: number | undefined;
  let auditLines = 0;
  const rssText = (m: { rssMB: number; anonMB: number }) => `${m.rssMB.toFixed(1)} MB (anon ${m.anonMB.toFixed(1)})`;
  for (let r = 0; r < ROUNDS; r++) {
    const pp = await startPair(`leash-r${r + 1}`, up.hello.port);
    const { fwd, leash } = pp;
    if (!pinning) {
      pinning = {
        pinned: PIN,
        proxyCore: PIN ? PROXY_CORE : undefined,
        allowed: { bench: allowedCpus(process.pid), upstream: allowedCpus(upstreamPid), ...(fwd ? { 'http-proxy': allowedCpus(fwd.pid!) } : {}), leash: allowedCpus(leash.pid!) },
        pinnedSelf,
        uvUseIoUring: env.UV_USE_IO_URING,
      };
      log(
        PIN
          ? `pinned: proxies on core ${PROXY_CORE}, this process and the upstream on core ${LOAD_CORE} (Cpus_allowed_list ${Object.entries(pinning.allowed).map(([k, v]) => `${k} ${v}`).join(', ')})`
          : 'NOT pinned (--no-pin, no taskset, or < 2 cores): figures are not comparable with pinned runs',
      );
    }
    // Idle RSS of leash and the forwarder, read at a fixed age of the leash process (D.idleAgeMs
    // after it answered): its RSS falls by ~5 MB when V8's memory reducer first runs (10-18 s
    // after start), so a reading that depended on how long anything took would not compare. Round 1 also reads an empty node at the same instant (≥ 1 s after each started):
    // reclaim of file pages under memory pressure lowers all of them alike; that is the idle goal.
    const empty = r === 0 ? startEmptyNode() : undefined;
    const trace: number[] = [];
    do {
      await sleep(1_000);
      trace.push(Math.round(memory(leash.pid!).rssMB * 10) / 10);
    } while (performance.now() - pp.readyAt < D.idleAgeMs);
    const idleL = memory(leash.pid!);
    const idleF = fwd ? memory(fwd.pid!) : undefined;
    const ageMs = Math.round(performance.now() - pp.readyAt);
    if (empty) {
      emptyNode = memory(empty.pid!);
      await stopChild(empty);
    }
    // From here VmHWM is the peak under this round's load, not start-up's (which can be above idle RSS).
    const resetL = resetPeakRss(leash.pid!);
    const resetF = fwd ? resetPeakRss(fwd.pid!) : undefined;
    if (!resetL || resetF === false) log('could not reset VmHWM (/proc/<pid>/clear_refs): peak − idle includes start-up');
    if (r === 0) {
      idle = { leash: idleL, fwd: idleF, ageMs, leashTraceMB: trace };
      log(`idle RSS at ${(ageMs / 1000).toFixed(0)} s: leash ${rssText(idleL)}${idleF ? `, http-proxy ${rssText(idleF)}` : ''}, empty node ${rssText(emptyNode!)}`);
      quietAtStart = WAIT ? await waitQuiet(ourPids, NOISY / 2, 30_000, log) : undefined;
    } else log(`round ${r + 1} idle RSS at ${(ageMs / 1000).toFixed(0)} s: leash ${rssText(idleL)}${idleF ? `, http-proxy ${rssText(idleF)}` : ''}`);

    // direct first, then the pair in alternating order (bare, leash / leash, bare): a drift across the round hits both sides.
    const pair = fwd ? (r % 2 === 0 ? [fwd, leash] : [leash, fwd]) : [leash];
    const order = [direct, ...pair];
    log(`round ${r + 1}/${ROUNDS}: ${order.map((t) => t.name).join(', ')} (fresh proxies: leash pid ${leash.pid}${fwd ? `, http-proxy pid ${fwd.pid}` : ''})`);
    const lat: Record<string, Latency> = {};
    for (const t of order) lat[t.name] = await latencyAt1k(t, false);
    // --audit: leash+audit joins the saturation cycles only, beside this round's leash.
    const { byTarget: sat, cycles: satCycles } = await slicedSaturation(pp.audit ? [...order, pp.audit.control, pp.audit.t] : order, upstreamPid);
    const { byTarget: s, load: sseLoad } = await sse(order);
    // Settled RSS and peak (VmHWM since idle) of this round's processes.
    await sleep(2_000);
    const procMem = (pid: number, idleM: Mem, reset: boolean): ProcMemory => {
      const endM = memory(pid);
      return { pid, idle: idleM, idleAgeMs: ageMs, end: endM, peakReset: reset, peakOverIdleMB: endM.hwmMB - idleM.rssMB };
    };
    const mem: Record<string, ProcMemory> = { leash: procMem(leash.pid!, idleL, resetL) };
    if (fwd) mem[fwd.name] = procMem(fwd.pid!, idleF!, resetF!);
    log(
      `round ${r + 1} peak − idle: leash ${mem.leash!.peakOverIdleMB.toFixed(1)} MB (VmHWM ${mem.leash!.end.hwmMB.toFixed(1)}, RSS after ${mem.leash!.end.rssMB.toFixed(1)})${F ? `, http-proxy ${mem[F]!.peakOverIdleMB.toFixed(1)} MB` : ''}`,
    );
    auditLines += auditLinesOf(pp.l);
    await stopPair(pp);
    const sseOf = (n: string) => s.get(n)!;
    const round: Round = {
      order: order.map((t) => t.name),
      latency: lat,
      saturation: sat,
      sse: Object.fromEntries(s),
      sseLoad,
      memory: mem,
      cpuRatio: F ? median(satCycles.map((c) => c.leash! / c[F]!)) : undefined,
      cpuRatioCycles: F ? satCycles.map((c) => c.leash! / c[F]!) : undefined,
      addedP50Ratio: F ? (lat.leash!.latency.p50 - lat.direct!.latency.p50) / (lat[F]!.latency.p50 - lat.direct!.latency.p50) : undefined,
      sseFirstPlusUs: F ? sseOf('leash').first.p50 - sseOf(F).first.p50 : undefined,
      sseLastRatio: F ? sseOf('leash').last.p50 / sseOf(F).last.p50 : undefined,
      sseRelayRatio: F ? sseOf('leash').span.p50 / sseOf(F).span.p50 : undefined,
      ...(pp.audit
        ? {
            auditCpuRatio: median(satCycles.map((c) => c[A]! / c[RC]!)),
            auditCpuRatioCycles: satCycles.map((c) => c[A]! / c[RC]!),
            auditRpsRatio: sat[A]!.rps / sat[RC]!.rps,
            redisCpuRatio: median(satCycles.map((c) => c[RC]! / c.leash!)),
            redisRpsRatio: sat[RC]!.rps / sat.leash!.rps,
          }
        : {}),
    };
    rounds.push(round);
    if (F)
      log(
        `round ${r + 1}: ${round.auditCpuRatio !== undefined ? `leash+audit ÷ leash+redis: CPU/req ${round.auditCpuRatio.toFixed(3)}×, req/s ${round.auditRpsRatio!.toFixed(3)}×; leash+redis ÷ leash: CPU/req ${round.redisCpuRatio!.toFixed(3)}×, req/s ${round.redisRpsRatio!.toFixed(3)}×; ` : ''}CPU/req ${round.cpuRatio!.toFixed(3)}× bare (per cycle ${round.cpuRatioCycles!.map((x) => x.toFixed(2)).join(', ')}), added p50 ${round.addedP50Ratio!.toFixed(3)}× bare, SSE first event ${round.sseFirstPlusUs! >= 0 ? '+' : ''}${round.sseFirstPlusUs!.toFixed(0)} µs vs bare, relay (first → last event) ${round.sseRelayRatio!.toFixed(3)}× bare (request → last event ${round.sseLastRatio!.toFixed(3)}×)`,
      );
  }
  if (!pinning || !idle || !emptyNode) throw new Error('no round ran');
  // What the rounds' leash+audit processes wrote (each flushed its pending summaries when stopped).
  const auditEntries = auditRedis ? await readUsageEntries(auditRedis.url) : undefined;

  // ------------------------------------------------------------ single phases
  // On their own fresh processes: a forwarder and a leash (info) for the aborts (and the
  // rotation comparison's "leash (again)"), started together before any of these phases so no
  // start-up lands on the proxy core during a measurement.
  const post = await startPair('leash-post', up.hello.port, false);
  let rot: (Leash & { admin: number }) | undefined;
  let rotT: Target | undefined;
  let rotStartupBadAuth = 0; // its readiness probe carries a JWT too
  if (ROTATION) {
    const before = JSON.parse((await once(HOST, up.hello.port, '/__stats')).body.toString()) as { badAuth: number };
    rot = await startLeashRotation('leash-rotation', up.hello.port, 'info');
    rotStartupBadAuth = (JSON.parse((await once(HOST, up.hello.port, '/__stats')).body.toString()) as { badAuth: number }).badAuth - before.badAuth;
    rotT = { name: 'leash (rotation)', port: rot.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: rot.pid };
  }
  const latency: Record<string, Latency> = {};
  const sat: Record<string, Saturation> = {};
  // Rotation mode: latency @1k and saturation, right after the rounds. Its requests carry a
  // JWT, not BENCH_KEY, so the upstream's "without the expected credential" count is
  // taken around them and left out of the static check.
  const rotation = { badAuth: rotStartupBadAuth, requests: 0, rotationsAt1k: { success: 0, failure: 0 }, rotationsSat: { success: 0, failure: 0 }, rssMB: 0 };
  if (rot && rotT) {
    const upStats = async () => JSON.parse((await once(HOST, up.hello.port, '/__stats')).body.toString()) as { requests: number; badAuth: number };
    const around = async <T>(fn: () => Promise<T>, into: { success: number; failure: number }): Promise<T> => {
      const [s0, r0] = [await upStats(), await rotationCount(rot.admin)];
      const out = await fn();
      const [s1, r1] = [await upStats(), await rotationCount(rot.admin)];
      rotation.badAuth += s1.badAuth - s0.badAuth;
      rotation.requests += s1.requests - s0.requests;
      into.success += r1.success - r0.success;
      into.failure += r1.failure - r0.failure;
      return out;
    };
    latency[rotT.name] = await around(() => latencyAt1k(rotT), rotation.rotationsAt1k);
    // A static leash once more, right after (a fresh process: the difference to the last round's
    // includes process-to-process variation, which is the noise floor of a comparison of two processes).
    latency['leash (again)'] = await latencyAt1k({ ...post.leash, name: 'leash (again)' });
    sat[rotT.name] = await around(() => saturation(rotT, upstreamPid), rotation.rotationsSat);
    rotation.rssMB = memory(rot.pid).rssMB;
    log(`rotation: ${rotation.rotationsAt1k.success} rotations during @1k, ${rotation.rotationsSat.success} during saturation, ${rotation.rotationsAt1k.failure + rotation.rotationsSat.failure} failed refreshes`);
    await stopChild(rot.child);
  }
  const aborts: Record<string, AbortResult> = {};
  for (const t of [direct, ...(post.fwd ? [post.fwd] : []), post.leash]) aborts[t.name] = await abortPropagation(t, up.hello.port, t.name);
  auditLines += auditLinesOf(post.l);
  await stopPair(post);
  // Round 1's end readings (they pair with `idle`, round 1's idle readings).
  const after = { leash: rounds[0]!.memory.leash!.end, fwd: F ? rounds[0]!.memory[F]!.end : undefined };
  const peakReset = rounds.every((r) => Object.values(r.memory).every((m) => m.peakReset));

  let warn: { latency: Latency; sat: Saturation; idle: number; peak: number } | undefined;
  if (WARN) {
    const w = await startLeash('leash-warn', up.hello.port, 'warn');
    await sleep(500);
    const idleW = memory(w.pid).rssMB;
    const wt: Target = { name: 'leash (warn)', port: w.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: w.pid };
    const lw = await latencyAt1k(wt);
    const sw = await saturation(wt, upstreamPid);
    warn = { latency: lw, sat: sw, idle: idleW, peak: memory(w.pid).hwmMB };
    await stopChild(w.child);
  }

  const prof = PROFILE ? await profileLeash(up.hello.port) : undefined;

  const upstreamStats = JSON.parse((await once(HOST, up.hello.port, '/__stats')).body.toString()) as { requests: number; badAuth: number };
  upstreamStats.badAuth -= rotation.badAuth; // rotation-mode requests carry a JWT by design
  for (const c of children) await stopChild(c);

  // ------------------------------------------------------------ report
  const us = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : `${Math.round(v)}`);
  const plus = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : `${v >= 0 ? '+' : ''}${Math.round(v)}`);
  const mb = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(1));
  const plusMB = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : `${v >= 0 ? '+' : ''}${v.toFixed(1)}`);
  const x = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : `${v.toFixed(2)}×`);
  const pass = (ok: boolean | undefined) => (ok === undefined ? '–' : ok ? 'pass' : '**fail**');
  /** Median over the rounds of one figure. */
  const med = (f: (r: Round) => number | undefined): number => median(rounds.map(f).filter((v): v is number => v !== undefined));
  const each = (f: (r: Round) => number | undefined, fmt: (v: number | undefined) => string) => (rounds.length > 1 ? rounds.map((r) => fmt(f(r))).join(', ') : '–');
  const row = (name: string, vals: string[]) => `| ${name} | ${vals.join(' | ')} |`;
  const lastRound = rounds[rounds.length - 1]!;
  const memOf = (r: Round, n: string) => r.memory[n];

  // Issue 11's goals, each compared within a round, median of the rounds. Idle: round 1's
  // processes (with the empty node); peak − idle: each round's own processes, median.
  const idleOverEmpty = idle.leash.rssMB - emptyNode.rssMB;
  const peakOverIdle = med((r) => memOf(r, 'leash')!.peakOverIdleMB);
  const fwdPeakOverIdle = F ? med((r) => memOf(r, F)!.peakOverIdleMB) : undefined;
  const peakOverIdleByProcess = {
    leash: { medianMB: peakOverIdle, perRoundMB: rounds.map((r) => memOf(r, 'leash')!.peakOverIdleMB) },
    ...(F ? { [F]: { medianMB: fwdPeakOverIdle!, perRoundMB: rounds.map((r) => memOf(r, F)!.peakOverIdleMB) } } : {}),
  };
  const goals = {
    cpuRatio: F ? med((r) => r.cpuRatio) : undefined,
    addedP50Ratio: F ? med((r) => r.addedP50Ratio) : undefined,
    sseFirstPlusUs: F ? med((r) => r.sseFirstPlusUs) : undefined,
    sseLastRatio: F ? med((r) => r.sseLastRatio) : undefined,
    sseRelayRatio: F ? med((r) => r.sseRelayRatio) : undefined,
    abortsPct: (100 * aborts.leash!.cancelledWithin1s) / D.aborts,
    emptyNodeRssMB: emptyNode.rssMB,
    idleOverEmptyMB: idleOverEmpty,
    peakOverIdleMB: peakOverIdle,
  };
  const ok = {
    cpu: goals.cpuRatio === undefined ? undefined : goals.cpuRatio <= GOALS.cpuRatio,
    added: goals.addedP50Ratio === undefined ? undefined : goals.addedP50Ratio <= GOALS.addedP50Ratio,
    first: goals.sseFirstPlusUs === undefined ? undefined : goals.sseFirstPlusUs <= GOALS.sseFirstPlusUs,
    relay: goals.sseRelayRatio === undefined ? undefined : goals.sseRelayRatio <= GOALS.sseRelayRatio,
    aborts: aborts.leash!.cancelledWithin1s === D.aborts,
    idle: idleOverEmpty <= GOALS.idleOverEmptyMB,
    peak: peakOverIdle <= GOALS.peakOverIdleMB,
  };
  const satOf = (r: Round, n: string) => r.saturation[n];
  const latOf = (r: Round, n: string) => r.latency[n];
  const sseOf = (r: Round, n: string) => r.sse[n];
  const addedOf = (r: Round, n: string) => latOf(r, n)!.latency.p50 - latOf(r, 'direct')!.latency.p50;
  const gcols = ['http-proxy (bare)', 'leash', `leash vs bare, median of ${rounds.length} round${rounds.length > 1 ? 's' : ''}`, 'per round', 'goal', 'result'];
  const goalLines = [
    row('issue 11 goal', gcols),
    row('---', gcols.map(() => '---')),
    row('proxy CPU/request at saturation (µs)', [
      F ? us(med((r) => satOf(r, F)!.proxyCpuUsPerReq)) : '–',
      us(med((r) => satOf(r, 'leash')!.proxyCpuUsPerReq)),
      x(goals.cpuRatio),
      each((r) => r.cpuRatio, (v) => (v === undefined ? '–' : v.toFixed(2))),
      `≤ ${GOALS.cpuRatio.toFixed(2)}× bare`,
      pass(ok.cpu),
    ]),
    row('added p50 @1k req/s, proxy p50 − direct p50 (µs)', [
      F ? plus(med((r) => addedOf(r, F))) : '–',
      plus(med((r) => addedOf(r, 'leash'))),
      x(goals.addedP50Ratio),
      each((r) => r.addedP50Ratio, (v) => (v === undefined ? '–' : v.toFixed(2))),
      `≤ ${GOALS.addedP50Ratio.toFixed(2)}× bare`,
      pass(ok.added),
    ]),
    row(`SSE first event p50, ${D.sseDelayMs} ms upstream delay (µs)`, [
      F ? us(med((r) => sseOf(r, F)!.first.p50)) : '–',
      us(med((r) => sseOf(r, 'leash')!.first.p50)),
      goals.sseFirstPlusUs === undefined ? '–' : `${plus(goals.sseFirstPlusUs)} µs`,
      each((r) => r.sseFirstPlusUs, plus),
      `≤ bare + ${GOALS.sseFirstPlusUs} µs`,
      pass(ok.first),
    ]),
    row(`SSE relay: first → last of ${D.burstEvents} events read, p50 (µs)`, [
      F ? us(med((r) => sseOf(r, F)!.span.p50)) : '–',
      us(med((r) => sseOf(r, 'leash')!.span.p50)),
      x(goals.sseRelayRatio),
      each((r) => r.sseRelayRatio, (v) => (v === undefined ? '–' : v.toFixed(2))),
      `≤ ${GOALS.sseRelayRatio.toFixed(2)}× bare`,
      pass(ok.relay),
    ]),
    row(`(not a goal) request written → last of ${D.burstEvents} events, p50 (µs)`, [
      F ? us(med((r) => sseOf(r, F)!.last.p50)) : '–',
      us(med((r) => sseOf(r, 'leash')!.last.p50)),
      x(goals.sseLastRatio),
      each((r) => r.sseLastRatio, (v) => (v === undefined ? '–' : v.toFixed(2))),
      '–',
      '–',
    ]),
    row('client aborts cancelling the upstream stream ≤ 1 s', [
      F ? `${aborts[F]!.cancelledWithin1s}/${D.aborts}` : '–',
      `${aborts.leash!.cancelledWithin1s}/${D.aborts}`,
      '–',
      '–',
      '100 %',
      pass(ok.aborts),
    ]),
    row(`idle RSS at ${(idle.ageMs / 1000).toFixed(0)} s, round 1's processes (MB); empty node ${mb(emptyNode.rssMB)} MB`, [
      mb(idle.fwd?.rssMB),
      mb(idle.leash.rssMB),
      `empty node ${plus(idleOverEmpty)} MB (RssAnon ${plus(idle.leash.anonMB - emptyNode.anonMB)})`,
      '–',
      `≤ empty node + ${GOALS.idleOverEmptyMB} MB`,
      pass(ok.idle),
    ]),
    row(`peak − idle per process under its round's load, VmHWM${peakReset ? ' (reset at idle)' : ' (incl. start-up)'} at the round's end − idle RSS (MB), median of rounds`, [
      mb(fwdPeakOverIdle),
      mb(peakOverIdle),
      '–',
      rounds.length > 1 ? `leash ${rounds.map((r) => mb(memOf(r, 'leash')!.peakOverIdleMB)).join(', ')}${F ? `; bare ${rounds.map((r) => mb(memOf(r, F)!.peakOverIdleMB)).join(', ')}` : ''}` : '–',
      `≤ ${GOALS.peakOverIdleMB} MB`,
      pass(ok.peak),
    ]),
  ];
  const goalTable = goalLines.join('\n');

  // Detailed figures: each the median of the rounds (single phases as measured).
  const names = ['direct', ...(F ? [F] : []), 'leash'];
  const cols = ['direct', ...(F ? ['http-proxy (bare)'] : []), 'leash (info)', ...(warn ? ['leash (warn)'] : [])];
  const memCols = (f: (m: ProcMemory) => number) => [...(F ? [mb(med((r) => f(memOf(r, F)!)))] : []), mb(med((r) => f(memOf(r, 'leash')!)))];
  const wl = warn?.latency;
  const perTarget = (f: (r: Round, n: string) => number | undefined, fmt: (v: number | undefined) => string, w?: number | string) => [
    ...names.map((n) => fmt(med((r) => f(r, n)))),
    ...(warn ? [typeof w === 'string' ? w : fmt(w)] : []),
  ];
  const lines = [
    row('metric (median of rounds)', cols),
    row('---', cols.map(() => '---')),
    row('p50 @1k req/s (µs)', perTarget((r, n) => latOf(r, n)!.latency.p50, us, wl?.latency.p50)),
    row('p99 @1k req/s (µs)', perTarget((r, n) => latOf(r, n)!.latency.p99, us, wl?.latency.p99)),
    row('p99.9 @1k req/s (µs)', perTarget((r, n) => latOf(r, n)!.latency.p999, us, wl?.latency.p999)),
    row('added p50 vs direct (µs)', perTarget((r, n) => addedOf(r, n), plus, wl ? wl.latency.p50 - med((r) => latOf(r, 'direct')!.latency.p50) : undefined)),
    row('added p99 vs direct (µs)', perTarget((r, n) => latOf(r, n)!.latency.p99 - latOf(r, 'direct')!.latency.p99, plus, wl ? wl.latency.p99 - med((r) => latOf(r, 'direct')!.latency.p99) : undefined)),
    row('proxy CPU @1k (µs/req)', perTarget((r, n) => latOf(r, n)!.proxyCpuUsPerReq, us, wl?.proxyCpuUsPerReq)),
    row('saturation (req/s, 10 conns)', perTarget((r, n) => satOf(r, n)!.rps, us, warn?.sat.rps)),
    row('proxy CPU @saturation (µs/req)', perTarget((r, n) => satOf(r, n)!.proxyCpuUsPerReq, us, warn?.sat.proxyCpuUsPerReq)),
    row('proxy cores @saturation', perTarget((r, n) => satOf(r, n)!.proxyCores, (v) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(2)), warn?.sat.proxyCores)),
    row('upstream CPU @saturation (µs/req)', perTarget((r, n) => satOf(r, n)!.upstreamCpuUsPerReq, us, warn?.sat.upstreamCpuUsPerReq)),
    row("idle RSS, round 1's processes (MB)", ['–', ...(idle.fwd ? [mb(idle.fwd.rssMB)] : []), mb(idle.leash.rssMB), ...(warn ? [mb(warn.idle)] : [])]),
    row("idle RssAnon / RssFile, round 1's processes (MB)", [`empty node ${mb(emptyNode.anonMB)} / ${mb(emptyNode.fileMB)}`, ...(idle.fwd ? [`${mb(idle.fwd.anonMB)} / ${mb(idle.fwd.fileMB)}`] : []), `${mb(idle.leash.anonMB)} / ${mb(idle.leash.fileMB)}`, ...(warn ? ['–'] : [])]),
    row('RSS at the end of the round, settled (MB)', ['–', ...memCols((m) => m.end.rssMB), ...(warn ? ['–'] : [])]),
    // Not a goal: how much of the growth under load is anonymous memory (heap, buffers, malloc)
    // and how much file pages (the node binary's code first run under load, e.g. TurboFan's).
    row('RssAnon / RssFile at the end of the round − at idle (MB)', ['–', ...(F ? [`${plusMB(med((r) => memOf(r, F)!.end.anonMB - memOf(r, F)!.idle.anonMB))} / ${plusMB(med((r) => memOf(r, F)!.end.fileMB - memOf(r, F)!.idle.fileMB))}`] : []), `${plusMB(med((r) => memOf(r, 'leash')!.end.anonMB - memOf(r, 'leash')!.idle.anonMB))} / ${plusMB(med((r) => memOf(r, 'leash')!.end.fileMB - memOf(r, 'leash')!.idle.fileMB))}`, ...(warn ? ['–'] : [])]),
    row(`peak RSS, VmHWM (MB)${peakReset ? ', since idle' : ''}`, ['–', ...memCols((m) => m.end.hwmMB), ...(warn ? [mb(warn.peak)] : [])]),
    row(`SSE first event p50 (µs, ${D.sseDelayMs} ms delay)`, perTarget((r, n) => sseOf(r, n)!.first.p50, us, '–')),
    row('SSE first event added p50 vs direct (µs)', perTarget((r, n) => sseOf(r, n)!.first.p50 - sseOf(r, 'direct')!.first.p50, plus, '–')),
    row('SSE event relay p50, upstream write → client read (µs)', perTarget((r, n) => sseOf(r, n)!.relay.p50, us, '–')),
    row(`SSE time to last of ${D.burstEvents} events p50 (µs)`, perTarget((r, n) => sseOf(r, n)!.last.p50, us, '–')),
    row(`SSE first → last of ${D.burstEvents} events p50 (µs)`, perTarget((r, n) => sseOf(r, n)!.span.p50, us, '–')),
    row('aborts cancelling upstream ≤ 1 s', [
      ...names.map((n) => `${aborts[n]!.cancelledWithin1s}/${D.aborts}${aborts[n]!.delayMs.n ? ` (p50 ${aborts[n]!.delayMs.p50.toFixed(1)} ms)` : ''}`),
      ...(warn ? ['–'] : []),
    ]),
  ];
  const table = lines.join('\n');

  // Other load, per round and phase: cores used by processes not ours, all cores (on the proxy's core).
  const rcols = rounds.map((_r, i) => `round ${i + 1}`);
  const loadLines = [
    row(`other processes, cores: all${PIN ? ` (on the proxy's core ${PROXY_CORE})` : ''}`, rcols),
    row('---', rcols.map(() => '---')),
    ...names.map((n) => row(`${n} @1k`, rounds.map((r) => fmtLoad(r.latency[n]!)))),
    ...names.map((n) => row(`${n} saturation`, rounds.map((r) => fmtLoad(r.saturation[n]!)))),
    row('SSE (all targets)', rounds.map((r) => fmtLoad(r.sseLoad))),
    row('order', rounds.map((r) => r.order.join(', '))),
  ];
  const extraLoad = warn ? `\nSingle phases: leash (warn) @1k ${fmtLoad(warn.latency)}, saturation ${fmtLoad(warn.sat)}.` : '';
  const loadTable = loadLines.join('\n') + extraLoad;

  // The fresh proxy processes of each round: how much one process differs from the next.
  const procNames = [...(F ? [F] : []), 'leash'];
  const label = (n: string) => (n === 'leash' ? 'leash' : 'bare');
  const procLines = [
    row('fresh proxy processes, per round', rcols),
    row('---', rcols.map(() => '---')),
    ...procNames.map((n) => row(`${label(n)} pid`, rounds.map((r) => String(memOf(r, n)!.pid)))),
    ...procNames.map((n) => row(`${label(n)} CPU @saturation (µs/req)`, rounds.map((r) => us(satOf(r, n)!.proxyCpuUsPerReq)))),
    ...procNames.map((n) => row(`${label(n)} CPU @1k (µs/req)`, rounds.map((r) => us(latOf(r, n)!.proxyCpuUsPerReq)))),
    ...procNames.map((n) => row(`${label(n)} idle RSS (MB)`, rounds.map((r) => `${mb(memOf(r, n)!.idle.rssMB)} at ${(memOf(r, n)!.idleAgeMs / 1000).toFixed(0)} s`))),
    ...procNames.map((n) => row(`${label(n)} peak − idle (MB)`, rounds.map((r) => mb(memOf(r, n)!.peakOverIdleMB)))),
  ];
  const procTable = procLines.join('\n');

  const profText = prof
    ? [
        `\nCPU profile of leash (info) at saturation: ${prof.rps.toFixed(0)} req/s, ${prof.cpuUsPerReq.toFixed(0)} µs CPU/req under the profiler; ${prof.summary.busyMs.toFixed(0)} ms busy of ${prof.summary.totalMs.toFixed(0)} ms sampled (main thread)`,
        '',
        '| area | self ms | % of busy |',
        '| --- | --- | --- |',
        ...prof.summary.byArea.slice(0, 14).map((a) => `| ${a.area} | ${a.selfMs.toFixed(0)} | ${a.pct.toFixed(1)} |`),
        '',
        '| top self-time function | where | self ms | % of busy |',
        '| --- | --- | --- | --- |',
        ...prof.summary.top.map((f) => `| ${f.name} | ${f.where} | ${f.selfMs.toFixed(0)} | ${f.pct.toFixed(1)} |`),
      ].join('\n')
    : '';

  let auditText = '';
  if (auditRedis && auditEntries) {
    const acols = [...rcols, 'median'];
    const arow = (name: string, f: (r: Round) => string, m: string) => row(name, [...rounds.map(f), m]);
    auditText = [
      `\n### Per-request audit summaries (--audit): leash+audit ÷ leash+redis (the summaries) and leash+redis ÷ leash (an idle Redis client), same rounds and saturation cycles\n`,
      row('metric', acols),
      row('---', acols.map(() => '---')),
      arow('leash req/s @saturation', (r) => us(satOf(r, 'leash')!.rps), us(med((r) => satOf(r, 'leash')!.rps))),
      arow('leash+redis req/s @saturation', (r) => us(satOf(r, RC)!.rps), us(med((r) => satOf(r, RC)!.rps))),
      arow('leash+audit req/s @saturation', (r) => us(satOf(r, A)!.rps), us(med((r) => satOf(r, A)!.rps))),
      arow('req/s, leash+audit ÷ leash+redis', (r) => x(r.auditRpsRatio), x(med((r) => r.auditRpsRatio))),
      arow('req/s, leash+redis ÷ leash', (r) => x(r.redisRpsRatio), x(med((r) => r.redisRpsRatio))),
      arow('leash CPU (µs/req)', (r) => us(satOf(r, 'leash')!.proxyCpuUsPerReq), us(med((r) => satOf(r, 'leash')!.proxyCpuUsPerReq))),
      arow('leash+redis CPU (µs/req)', (r) => us(satOf(r, RC)!.proxyCpuUsPerReq), us(med((r) => satOf(r, RC)!.proxyCpuUsPerReq))),
      arow('leash+audit CPU (µs/req)', (r) => us(satOf(r, A)!.proxyCpuUsPerReq), us(med((r) => satOf(r, A)!.proxyCpuUsPerReq))),
      arow('CPU/req, leash+audit ÷ leash+redis (median of cycles)', (r) => `${x(r.auditCpuRatio)} (${(r.auditCpuRatioCycles ?? []).map((v) => v.toFixed(2)).join(', ')})`, x(med((r) => r.auditCpuRatio))),
      arow('CPU/req, leash+redis ÷ leash (median of cycles)', (r) => x(r.redisCpuRatio), x(med((r) => r.redisCpuRatio))),
      arow('leash+audit / leash+redis errors + non-2xx', (r) => `${satOf(r, A)!.errors + satOf(r, A)!.non2xx} / ${satOf(r, RC)!.errors + satOf(r, RC)!.non2xx}`, '–'),
      '',
      `The leash+audit processes wrote ${auditEntries.usage} \`usage\` entries to the stream, counting ${auditEntries.requests} requests (one entry per key per 5 s flush).`,
    ].join('\n');
  }
  const L = lastRound.latency.leash!;
  const d = lastRound.latency.direct!;
  let rotText = '';
  if (rotT) {
    const R = latency[rotT.name]!;
    const A = latency['leash (again)']!;
    const SR = sat[rotT.name]!;
    const SL = lastRound.saturation.leash!;
    const rrow = (name: string, st: string, again: string, ro: string) => `| ${name} | ${st} | ${again} | ${ro} |`;
    rotText = [
      `\n### leash with rotation (jwt TTL ${ROTATION_TTL}, \`leash dev --config\`) vs static credential, same run\n`,
      '| metric | leash static (last round) | leash static (again, after) | leash rotation |',
      '| --- | --- | --- | --- |',
      rrow('p50 @1k req/s (µs)', us(L.latency.p50), us(A.latency.p50), us(R.latency.p50)),
      rrow('p99 @1k req/s (µs)', us(L.latency.p99), us(A.latency.p99), us(R.latency.p99)),
      rrow('p99.9 @1k req/s (µs)', us(L.latency.p999), us(A.latency.p999), us(R.latency.p999)),
      rrow(
        'added p50 / p99 vs direct (µs)',
        `${plus(L.latency.p50 - d.latency.p50)} / ${plus(L.latency.p99 - d.latency.p99)}`,
        `${plus(A.latency.p50 - d.latency.p50)} / ${plus(A.latency.p99 - d.latency.p99)}`,
        `${plus(R.latency.p50 - d.latency.p50)} / ${plus(R.latency.p99 - d.latency.p99)}`,
      ),
      rrow('proxy CPU @1k (µs/req)', us(L.proxyCpuUsPerReq), us(A.proxyCpuUsPerReq), us(R.proxyCpuUsPerReq)),
      rrow('failed requests @1k (non-200 or error)', String(L.errors), String(A.errors), `**${R.errors}** of ${R.sent}`),
      rrow('credential rotations during @1k', '–', '–', `${rotation.rotationsAt1k.success} (failed refreshes ${rotation.rotationsAt1k.failure})`),
      rrow('saturation (req/s, 10 conns)', us(SL.rps), '–', us(SR.rps)),
      rrow('proxy CPU @saturation (µs/req)', us(SL.proxyCpuUsPerReq), '–', us(SR.proxyCpuUsPerReq)),
      rrow('failed requests @saturation (errors + non-2xx)', String(SL.errors + SL.non2xx), '–', `**${SR.errors + SR.non2xx}** of ${SR.total}`),
      rrow('credential rotations during saturation', '–', '–', `${rotation.rotationsSat.success} (failed refreshes ${rotation.rotationsSat.failure})`),
      rrow('other processes during @1k / saturation (cores)', `${fmtLoad(L)} / ${fmtLoad(SL)}`, `${fmtLoad(A)} / –`, `${fmtLoad(R)} / ${fmtLoad(SR)}`),
      rrow('RSS after the phases (MB)', '–', '–', mb(rotation.rssMB)),
    ].join('\n');
  }
  const sumErr = (n: string) => rounds.reduce((a, r) => a + r.latency[n]!.errors, 0);
  const sumQueued = (n: string) => rounds.reduce((a, r) => a + r.latency[n]!.queued, 0);
  const checks = [
    `upstream saw ${upstreamStats.requests} requests, ${upstreamStats.badAuth} without the expected credential (must be 0)`,
    `leash (info) processes (${rounds.length} round${rounds.length > 1 ? 's' : ''} + aborts) wrote ${auditLines} "request" audit lines`,
    `leash node flags: ${fmtNodeFlags(LEASH_NODE_FLAGS)}${sameAsImage ? " (the image's, Dockerfile ENTRYPOINT)" : ` (**not** the image's: ${fmtNodeFlags(IMAGE_NODE_FLAGS)})`}; the bare forwarder runs with the same flags (the floor measured the same way), the empty node with none`,
    `latency runs (all rounds): errors ${names.map((n) => `${n} ${sumErr(n)}`).join(', ')}; queued sends ${names.map((n) => `${n} ${sumQueued(n)}`).join(', ')}`,
    PIN
      ? `pinning: proxies on core ${PROXY_CORE}, bench process and upstream on core ${LOAD_CORE} (Cpus_allowed_list: ${Object.entries(pinning.allowed).map(([k, v]) => `${k} ${v}`).join(', ')}); children run with UV_USE_IO_URING=0`
      : 'pinning: **off** (--no-pin, no taskset, or < 2 cores); children run with UV_USE_IO_URING=0',
  ];
  process.stdout.write(
    [
      `\n## leash proxy benchmark ${QUICK ? '(QUICK)' : ''}\n`,
      `machine: ${machine.nproc} × ${machine.cpu}, node ${machine.node}, ${machine.date}; ${rounds.length} interleaved round(s), fresh proxy processes each; leash node flags: ${fmtNodeFlags(LEASH_NODE_FLAGS)}\n`,
      goalTable,
      '',
      table,
      '',
      loadTable,
      '',
      procTable,
      profText,
      auditText,
      rotText,
      '',
      checks.map((c) => `- ${c}`).join('\n'),
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(HERE, 'last-run.json'),
    JSON.stringify(
      {
        machine,
        pinning,
        quietAtStart,
        leashNodeFlags: LEASH_NODE_FLAGS,
        imageNodeFlags: IMAGE_NODE_FLAGS,
        params: D,
        goalTargets: GOALS,
        goals,
        goalsMet: ok,
        rounds,
        latency,
        saturation: sat,
        rotation,
        aborts,
        idle,
        emptyNode,
        peakReset,
        after,
        peakOverIdle: peakOverIdleByProcess,
        warn,
        profile: prof,
        upstreamStats,
        auditLines,
        auditEntries,
      },
      null,
      2,
    ),
  );
  rmSync(TMP, { recursive: true, force: true });
  log(`done; details in ${join(HERE, 'last-run.json')}`);
  if (upstreamStats.badAuth !== 0) process.exitCode = 1;
  if (rotT && (latency[rotT.name]!.errors !== 0 || sat[rotT.name]!.errors + sat[rotT.name]!.non2xx !== 0)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  process.exit(1);
});
