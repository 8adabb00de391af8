import type { ChildProcess } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import {
  cpuUs,
  foreignMeter,
  freePort,
  httpGet,
  memory,
  once,
  paced,
  RawConn,
  sleep,
  spawnNode,
  spawnNodeWithHello,
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
 * leash proxy benchmark: direct vs a bare http-proxy forwarder vs leash, in one run.
 * Load generator (this process), proxy and upstream are separate processes.
 *
 *   npm run bench                 full run (~100 s)
 *   node dist/bench/proxy.js --quick      short phases, for checking the harness
 *   --leash-dist=DIR  measure the leash compiled in DIR instead of ./dist/src
 *   flags: --no-baseline --no-warn --no-profile --no-wait (don't wait for a quiet machine)
 *   --rotation    also run leash in rotation mode (`leash dev --config`: in-process authority,
 *                 jwt credential with a 5 s TTL, so it rotates about every 2.5 s) and compare
 *                 its latency @1k and saturation with the static-credential leash of this run
 *
 * Prints a Markdown table and writes dist/bench/last-run.json.
 */

const argv = new Set(process.argv.slice(2).filter((a) => !a.startsWith('--leash-dist=')));
const QUICK = argv.has('--quick');
const BASELINE = !argv.has('--no-baseline');
const WARN = !argv.has('--no-warn');
const PROFILE = !argv.has('--no-profile');
const WAIT = !argv.has('--no-wait');
const ROTATION = argv.has('--rotation');
/** TTL of the rotating jwt credential (--rotation). */
const ROTATION_TTL = '5s';
/** Other processes' CPU (cores) above which a phase is measured again once. */
const NOISY = 0.25;
const D = {
  warmMs: QUICK ? 500 : 2_000,
  latencyMs: QUICK ? 2_000 : 10_000,
  rate: 1_000,
  connections: 10,
  satWarmS: 1,
  satS: QUICK ? 2 : 5,
  sseRuns: QUICK ? 30 : 150,
  sseDelayMs: 10,
  aborts: 100,
};

const HOST = '127.0.0.1';
const KEY = `sk-bench-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
/** The compiled leash to measure: ./dist/src, or --leash-dist=DIR (e.g. a build of another commit). */
const LEASH_DIST = resolve(process.argv.find((a) => a.startsWith('--leash-dist='))?.slice('--leash-dist='.length) ?? join(ROOT, 'dist/src'));
const TMP = mkdtempSync(join(tmpdir(), 'leash-bench-'));
/**
 * Every leash process of a run uses one snapshot of the build, so a rebuild of dist/
 * during the run (others work in the same tree) cannot mix versions or break a phase.
 */
function snapshotBuild(): string {
  const app = join(TMP, 'app');
  cpSync(LEASH_DIST, join(app, 'dist/src'), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
  return join(app, 'dist/src/cli.js');
}
const CLI = snapshotBuild();
const env = { ...process.env, BENCH_KEY: KEY };
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

async function startLeash(tag: string, upstreamPort: number, level: string, nodeArgs: string[] = []): Promise<Leash> {
  const [port, admin] = [await freePort(), await freePort()];
  const cfg = join(TMP, `${tag}.yaml`);
  writeFileSync(
    cfg,
    [
      `listen: "${HOST}:${port}"`,
      `admin: "${HOST}:${admin}"`,
      'shutdown: { grace: 1s }',
      `log: { level: ${level} }`,
      'routes:',
      '  bench:',
      `    upstream: "http://${HOST}:${upstreamPort}"`,
      '    credential: { env: BENCH_KEY }',
      '    inject: { header: authorization, format: "Bearer {{credential}}" }',
      '    allow: ["GET /v1/**", "POST /v1/**"]',
      '',
    ].join('\n'),
  );
  // Logs go to a file, as they would to a container runtime's log pipe.
  const logPath = join(TMP, `${tag}.log`);
  const fd = openSync(logPath, 'w');
  const child = spawnNode([...nodeArgs, CLI, 'sidecar', '--config', cfg], env, ['ignore', fd, 'pipe']);
  closeSync(fd);
  children.push(child);
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
  const child = spawnNode([CLI, 'dev', '--config', cfg], env, ['ignore', fd, 'pipe']);
  closeSync(fd);
  children.push(child);
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

type Latency = PacedResult & { proxyCpuUsPerReq: number | undefined; foreignCores: number };

/** Runs a phase; if other processes were busy during it, waits for quiet and runs it once more, keeping the quieter one. */
async function quietly<T extends { foreignCores: number }>(name: string, phase: () => Promise<T>): Promise<T> {
  const a = await phase();
  if (!WAIT || a.foreignCores <= NOISY || waitBudgetLeft() < 3_000) return a;
  log(`${name}: other processes used ${a.foreignCores.toFixed(2)} cores during the phase; repeating once`);
  await waitQuiet(ourPids, NOISY / 2, 15_000, log);
  const b = await phase();
  return b.foreignCores < a.foreignCores ? b : a;
}

async function latencyAt1k(t: Target): Promise<Latency> {
  await paced({ host: HOST, port: t.port, payload: okPayload(t), rate: D.rate, durationMs: D.warmMs, connections: D.connections });
  return quietly(`${t.name} @1k`, async () => {
    const c0 = t.pid ? cpuUs(t.pid) : 0;
    const foreign = foreignMeter(ourPids);
    const r = await paced({ host: HOST, port: t.port, payload: okPayload(t), rate: D.rate, durationMs: D.latencyMs, connections: D.connections });
    const foreignCores = foreign();
    const proxyCpuUsPerReq = t.pid ? (cpuUs(t.pid) - c0) / r.sent : undefined;
    log(
      `${t.name.padEnd(12)} @1k: p50 ${r.latency.p50.toFixed(0)} µs p99 ${r.latency.p99.toFixed(0)} µs, ${r.achievedRate.toFixed(0)} req/s, errors ${r.errors}, queued ${r.queued}, others ${foreignCores.toFixed(2)} cores`,
    );
    return { ...r, proxyCpuUsPerReq, foreignCores };
  });
}

interface Saturation {
  rps: number;
  total: number;
  errors: number;
  non2xx: number;
  latencyP50Ms: number;
  proxyCpuUsPerReq: number | undefined;
  upstreamCpuUsPerReq: number;
  proxyCores: number | undefined;
  foreignCores: number;
}

async function saturation(t: Target, upstreamPid: number): Promise<Saturation> {
  const url = `http://${HOST}:${t.port}${t.prefix}/ok`;
  const headers = reqHeaders(t);
  await autocannon({ url, connections: D.connections, duration: D.satWarmS, headers });
  return quietly(`${t.name} saturation`, async () => {
  const foreign = foreignMeter(ourPids);
  const [p0, u0, w0] = [t.pid ? cpuUs(t.pid) : 0, cpuUs(upstreamPid), performance.now()];
  const r = await autocannon({ url, connections: D.connections, duration: D.satS, headers });
  const [p1, u1, w1] = [t.pid ? cpuUs(t.pid) : 0, cpuUs(upstreamPid), performance.now()];
  const foreignCores = foreign();
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
    foreignCores,
  };
  log(
    `${t.name.padEnd(12)} saturation: ${out.rps.toFixed(0)} req/s, proxy CPU ${out.proxyCpuUsPerReq?.toFixed(0) ?? '-'} µs/req (${out.proxyCores?.toFixed(2) ?? '-'} cores), errors ${out.errors}, non2xx ${out.non2xx}, others ${foreignCores.toFixed(2)} cores`,
  );
  return out;
  });
}

/** Sequential SSE requests, targets interleaved run by run; time to the first event. */
interface Sse {
  /** Request written → first event read: what the agent waits (includes the request's trip). */
  first: Stats;
  headers: Stats;
  /** Upstream's write of the event → client's read of it (one clock, CLOCK_MONOTONIC). */
  relay: Stats;
}

async function sseFirstEvent(targets: Target[]): Promise<Map<string, Sse>> {
  const conns = await Promise.all(targets.map((t) => RawConn.open(HOST, t.port)));
  const first = targets.map(() => [] as number[]);
  const heads = targets.map(() => [] as number[]);
  const relay = targets.map(() => [] as number[]);
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
  for (const c of conns) c.destroy();
  const out = new Map<string, Sse>();
  targets.forEach((t, j) => {
    const r = { first: stats(first[j]!), headers: stats(heads[j]!), relay: stats(relay[j]!) };
    out.set(t.name, r);
    log(`${t.name.padEnd(12)} SSE first event p50 ${(r.first.p50 / 1000).toFixed(3)} ms (delay ${D.sseDelayMs} ms), event relay p50 ${r.relay.p50.toFixed(0)} µs`);
  });
  return out;
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
  const l = await startLeash('leash-prof', upstreamPort, 'info', ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250']);
  const t: Target = { name: 'leash (prof)', port: l.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: l.pid };
  const upPid = upstreamPid;
  const s = await saturation(t, upPid);
  await stopChild(l.child);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no .cpuprofile written');
  return { summary: summarise(join(dir, file)), rps: s.rps, cpuUsPerReq: s.proxyCpuUsPerReq! };
}

// ---------------------------------------------------------------- main

let upstreamPid = 0;
/** Every process this run started, so a failure never leaves one behind. */
const children: ChildProcess[] = [];
const ourPids = (): number[] => children.filter((c) => c.exitCode === null && c.pid !== undefined).map((c) => c.pid!);

async function main(): Promise<void> {
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? '?';
  const machine = { nproc: cpus().length, cpu: cpuModel, node: process.version, date: new Date().toISOString() };
  log(`machine: ${machine.nproc} cores, ${machine.cpu}, node ${machine.node}${QUICK ? ' (QUICK run)' : ''}; leash from ${LEASH_DIST}`);

  const up = await spawnNodeWithHello<{ port: number }>([join(HERE, 'upstream.js')], env);
  upstreamPid = up.child.pid!;
  children.push(up.child);
  const direct: Target = { name: 'direct', port: up.hello.port, prefix: '/v1', auth: `Bearer ${KEY}`, pid: undefined };

  let fwd: Target | undefined;
  if (BASELINE) {
    const f = await spawnNodeWithHello<{ port: number }>([join(HERE, 'forwarder.js'), String(up.hello.port)], env);
    children.push(f.child);
    fwd = { name: 'http-proxy', port: f.hello.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: f.child.pid! };
  }

  const l = await startLeash('leash-info', up.hello.port, 'info');
  const leash: Target = { name: 'leash', port: l.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: l.pid };
  const targets = [direct, ...(fwd ? [fwd] : []), leash];
  let rot: (Leash & { admin: number }) | undefined;
  let rotT: Target | undefined;
  let rotStartupBadAuth = 0; // its readiness probe carries a JWT too
  if (ROTATION) {
    const before = JSON.parse((await once(HOST, up.hello.port, '/__stats')).body.toString()) as { badAuth: number };
    rot = await startLeashRotation('leash-rotation', up.hello.port, 'info');
    rotStartupBadAuth = (JSON.parse((await once(HOST, up.hello.port, '/__stats')).body.toString()) as { badAuth: number }).badAuth - before.badAuth;
    rotT = { name: 'leash (rotation)', port: rot.port, prefix: '/bench/v1', auth: 'Bearer agent-placeholder', pid: rot.pid };
  }
  await sleep(1_000);
  const quietAtStart = WAIT ? await waitQuiet(ourPids, NOISY / 2, 30_000, log) : undefined;
  const idle = { leash: memory(l.pid), fwd: fwd ? memory(fwd.pid!) : undefined };
  log(`leash idle RSS ${idle.leash.rssMB.toFixed(1)} MB${idle.fwd ? `, http-proxy idle RSS ${idle.fwd.rssMB.toFixed(1)} MB` : ''}`);

  const latency: Record<string, Awaited<ReturnType<typeof latencyAt1k>>> = {};
  for (const t of targets) latency[t.name] = await latencyAt1k(t);
  const sat: Record<string, Saturation> = {};
  for (const t of targets) sat[t.name] = await saturation(t, upstreamPid);
  // Rotation mode: the same two phases, right after the static leash's. Its requests carry a
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
    // The static leash once more, right after: a drift between the two static runs is the noise floor.
    latency['leash (again)'] = await latencyAt1k({ ...leash, name: 'leash (again)' });
    sat[rotT.name] = await around(() => saturation(rotT, upstreamPid), rotation.rotationsSat);
    rotation.rssMB = memory(rot.pid).rssMB;
    log(`rotation: ${rotation.rotationsAt1k.success} rotations during @1k, ${rotation.rotationsSat.success} during saturation, ${rotation.rotationsAt1k.failure + rotation.rotationsSat.failure} failed refreshes`);
    await stopChild(rot.child);
  }
  const sse = await sseFirstEvent(targets);
  const aborts: Record<string, AbortResult> = {};
  for (const t of targets) aborts[t.name] = await abortPropagation(t, up.hello.port, t.name);
  await sleep(2_000);
  const after = { leash: memory(l.pid), fwd: fwd ? memory(fwd.pid!) : undefined };
  log(`leash RSS after load ${after.leash.rssMB.toFixed(1)} MB, peak (VmHWM) ${after.leash.hwmMB.toFixed(1)} MB`);
  await stopChild(l.child);
  const auditLines = readFileSync(l.logPath, 'utf8').split('\n').filter((s) => s.includes('"event":"request"')).length;

  let warn: { latency: Latency; sat: Saturation; idle: number; peak: number } | undefined;
  if (WARN) {
    const w = await startLeash('leash-warn', up.hello.port, 'warn');
    await sleep(500);
    const idleW = memory(w.pid).rssMB;
    const wt: Target = { ...leash, name: 'leash (warn)', port: w.port, pid: w.pid };
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
  const d = latency.direct!;
  const L = latency.leash!;
  const F = fwd ? latency[fwd.name] : undefined;
  const us = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : `${Math.round(v)}`);
  const plus = (v: number | undefined) => (v === undefined ? '–' : `${v >= 0 ? '+' : ''}${Math.round(v)}`);
  const mb = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(1));
  const met = (ok: boolean) => (ok ? 'met' : '**not met**');
  const addP50 = L.latency.p50 - d.latency.p50;
  const addP99 = L.latency.p99 - d.latency.p99;
  const sseAdd = sse.get('leash')!.first.p50 - sse.get('direct')!.first.p50;
  const cols = ['direct', ...(fwd ? ['http-proxy (bare)'] : []), 'leash (info)', ...(warn ? ['leash (warn)'] : []), 'target', 'leash'];
  const row = (name: string, vals: string[]) => `| ${name} | ${vals.join(' | ')} |`;
  const wl = warn?.latency;
  const lines = [
    row('metric', cols),
    row('---', cols.map(() => '---')),
    row('p50 @1k req/s (µs)', [us(d.latency.p50), ...(F ? [us(F.latency.p50)] : []), us(L.latency.p50), ...(wl ? [us(wl.latency.p50)] : []), '', '']),
    row('p99 @1k req/s (µs)', [us(d.latency.p99), ...(F ? [us(F.latency.p99)] : []), us(L.latency.p99), ...(wl ? [us(wl.latency.p99)] : []), '', '']),
    row('p99.9 @1k req/s (µs)', [us(d.latency.p999), ...(F ? [us(F.latency.p999)] : []), us(L.latency.p999), ...(wl ? [us(wl.latency.p999)] : []), '', '']),
    row('added p50 vs direct (µs)', ['0', ...(F ? [plus(F.latency.p50 - d.latency.p50)] : []), plus(addP50), ...(wl ? [plus(wl.latency.p50 - d.latency.p50)] : []), '≤ +300', met(addP50 <= 300)]),
    row('added p99 vs direct (µs)', ['0', ...(F ? [plus(F.latency.p99 - d.latency.p99)] : []), plus(addP99), ...(wl ? [plus(wl.latency.p99 - d.latency.p99)] : []), '≤ +1000', met(addP99 <= 1000)]),
    row('proxy CPU @1k (µs/req)', ['–', ...(F ? [us(F.proxyCpuUsPerReq)] : []), us(L.proxyCpuUsPerReq), ...(wl ? [us(wl.proxyCpuUsPerReq)] : []), '', '']),
    row('saturation (req/s, 10 conns)', [us(sat.direct!.rps), ...(fwd ? [us(sat[fwd.name]!.rps)] : []), us(sat.leash!.rps), ...(warn ? [us(warn.sat.rps)] : []), '', '']),
    row('proxy CPU @saturation (µs/req)', ['–', ...(fwd ? [us(sat[fwd.name]!.proxyCpuUsPerReq)] : []), us(sat.leash!.proxyCpuUsPerReq), ...(warn ? [us(warn.sat.proxyCpuUsPerReq)] : []), '', '']),
    row('upstream CPU @saturation (µs/req)', [us(sat.direct!.upstreamCpuUsPerReq), ...(fwd ? [us(sat[fwd.name]!.upstreamCpuUsPerReq)] : []), us(sat.leash!.upstreamCpuUsPerReq), ...(warn ? [us(warn.sat.upstreamCpuUsPerReq)] : []), '', '']),
    row('other processes during @1k / saturation (cores)', [
      ...targets.map((t) => `${latency[t.name]!.foreignCores.toFixed(2)} / ${sat[t.name]!.foreignCores.toFixed(2)}`),
      ...(warn ? [`${warn.latency.foreignCores.toFixed(2)} / ${warn.sat.foreignCores.toFixed(2)}`] : []),
      '',
      '',
    ]),
    row('idle RSS (MB)', ['–', ...(idle.fwd ? [mb(idle.fwd.rssMB)] : []), mb(idle.leash.rssMB), ...(warn ? [mb(warn.idle)] : []), '≤ 45', met(idle.leash.rssMB <= 45)]),
    row('RSS after load, settled (MB)', ['–', ...(after.fwd ? [mb(after.fwd.rssMB)] : []), mb(after.leash.rssMB), ...(warn ? ['–'] : []), '', '']),
    row('peak RSS, VmHWM (MB)', ['–', ...(after.fwd ? [mb(after.fwd.hwmMB)] : []), mb(after.leash.hwmMB), ...(warn ? [mb(warn.peak)] : []), '≤ 64', met(after.leash.hwmMB <= 64)]),
    row(`SSE first event p50 (µs, ${D.sseDelayMs} ms delay)`, [...targets.map((t) => us(sse.get(t.name)!.first.p50)), ...(warn ? ['–'] : []), '', '']),
    row('SSE event relay p50, upstream write → client read (µs)', [...targets.map((t) => us(sse.get(t.name)!.relay.p50)), ...(warn ? ['–'] : []), '', '']),
    row('SSE first event added p50 (µs)', [...targets.map((t) => plus(sse.get(t.name)!.first.p50 - sse.get('direct')!.first.p50)), ...(warn ? ['–'] : []), '≤ +300', met(sseAdd <= 300)]),
    row('aborts cancelling upstream ≤ 1 s', [...targets.map((t) => `${aborts[t.name]!.cancelledWithin1s}/${D.aborts}${aborts[t.name]!.delayMs.n ? ` (p50 ${aborts[t.name]!.delayMs.p50.toFixed(1)} ms)` : ''}`), ...(warn ? ['–'] : []), '100/100', met(aborts.leash!.cancelledWithin1s === D.aborts)]),
  ];
  const table = lines.join('\n');

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

  let rotText = '';
  if (rotT) {
    const R = latency[rotT.name]!;
    const A = latency['leash (again)']!;
    const SR = sat[rotT.name]!;
    const SL = sat.leash!;
    const rrow = (name: string, st: string, again: string, ro: string) => `| ${name} | ${st} | ${again} | ${ro} |`;
    rotText = [
      `\n### leash with rotation (jwt TTL ${ROTATION_TTL}, \`leash dev --config\`) vs static credential, same run\n`,
      '| metric | leash static | leash static (again, after) | leash rotation |',
      '| --- | --- | --- | --- |',
      rrow('p50 @1k req/s (µs)', us(L.latency.p50), us(A.latency.p50), us(R.latency.p50)),
      rrow('p99 @1k req/s (µs)', us(L.latency.p99), us(A.latency.p99), us(R.latency.p99)),
      rrow('p99.9 @1k req/s (µs)', us(L.latency.p999), us(A.latency.p999), us(R.latency.p999)),
      rrow('added p50 / p99 vs direct (µs)', `${plus(addP50)} / ${plus(addP99)}`, `${plus(A.latency.p50 - d.latency.p50)} / ${plus(A.latency.p99 - d.latency.p99)}`, `${plus(R.latency.p50 - d.latency.p50)} / ${plus(R.latency.p99 - d.latency.p99)}`),
      rrow('proxy CPU @1k (µs/req)', us(L.proxyCpuUsPerReq), us(A.proxyCpuUsPerReq), us(R.proxyCpuUsPerReq)),
      rrow('failed requests @1k (non-200 or error)', String(L.errors), String(A.errors), `**${R.errors}** of ${R.sent}`),
      rrow('credential rotations during @1k', '–', '–', `${rotation.rotationsAt1k.success} (failed refreshes ${rotation.rotationsAt1k.failure})`),
      rrow('saturation (req/s, 10 conns)', us(SL.rps), '–', us(SR.rps)),
      rrow('proxy CPU @saturation (µs/req)', us(SL.proxyCpuUsPerReq), '–', us(SR.proxyCpuUsPerReq)),
      rrow('failed requests @saturation (errors + non-2xx)', String(SL.errors + SL.non2xx), '–', `**${SR.errors + SR.non2xx}** of ${SR.total}`),
      rrow('credential rotations during saturation', '–', '–', `${rotation.rotationsSat.success} (failed refreshes ${rotation.rotationsSat.failure})`),
      rrow('other processes during @1k / saturation (cores)', `${L.foreignCores.toFixed(2)} / ${SL.foreignCores.toFixed(2)}`, `${A.foreignCores.toFixed(2)} / –`, `${R.foreignCores.toFixed(2)} / ${SR.foreignCores.toFixed(2)}`),
      rrow('RSS after the phases (MB)', '–', '–', mb(rotation.rssMB)),
    ].join('\n');
  }
  const checks = [
    `upstream saw ${upstreamStats.requests} requests, ${upstreamStats.badAuth} without the expected credential (must be 0)`,
    `leash (info) wrote ${auditLines} "request" audit lines`,
    `latency runs: errors direct ${d.errors}, leash ${L.errors}${F ? `, http-proxy ${F.errors}` : ''}; queued sends direct ${d.queued}, leash ${L.queued}`,
  ];
  process.stdout.write(
    `\n## leash proxy benchmark ${QUICK ? '(QUICK)' : ''}\n\nmachine: ${machine.nproc} × ${machine.cpu}, node ${machine.node}, ${machine.date}\n\n${table}\n${profText}${rotText}\n\n${checks.map((c) => `- ${c}`).join('\n')}\n`,
  );
  writeFileSync(
    join(HERE, 'last-run.json'),
    JSON.stringify({ machine, quietAtStart, params: D, latency, saturation: sat, rotation, sse: Object.fromEntries(sse), aborts, idle, after, warn, profile: prof, upstreamStats, auditLines }, null, 2),
  );
  rmSync(TMP, { recursive: true, force: true });
  log(`done; details in ${join(HERE, 'last-run.json')}`);
  if (upstreamStats.badAuth !== 0) process.exitCode = 1;
  if (rotT && (latency[rotT.name]!.errors !== 0 || sat[rotT.name]!.errors + sat[rotT.name]!.non2xx !== 0)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  process.exit(1);
});
