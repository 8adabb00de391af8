import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../src/pki/ca.js';
import { createCsr, createIdentityKey } from '../src/pki/x509.js';
import { cpuUs, foreignMeter, freePort, memory, RawConn, SHIPPED_CLI, sleep, spawnNode, startRedisServer, stats, stopChild, type Stats } from './lib.js';
import { summarise, type ProfileSummary } from './profile.js';

/**
 * leash authority issuance benchmark: `leash authority` as its own process (pinned to
 * core 0 when taskset exists), this process as the client (pinned to core 1). N client
 * identities are bootstrapped over the HTTPS API (join token + CSR), then C workers, each
 * on its own keep-alive mTLS connection, POST /v1/leases for a jwt credential back to
 * back (closed loop) for D seconds.
 *
 *   node dist/bench/authority.js            in-memory store, then Redis (if redis-server exists), then a profile
 *   flags: --quick  --no-redis  --no-profile  --connections=N  --seconds=S
 */

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const num = (name: string, dflt: number) => Number(args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1) ?? dflt);
const QUICK = flag('--quick');
const REDIS = !flag('--no-redis');
const PROFILE = !flag('--no-profile');
const CONNECTIONS = num('--connections', 32);
const SECONDS = num('--seconds', QUICK ? 3 : 10);
const WARM_S = QUICK ? 1 : 2;
const IDENTITIES = CONNECTIONS;
const TARGET_LEASES_PER_S = 2_000;

const HOST = '127.0.0.1';
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
const TMP = mkdtempSync(join(tmpdir(), 'leash-bench-authority-'));
const ADMIN_TOKEN = `bench-admin-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const t0 = Date.now();
const log = (msg: string) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);

/** One snapshot of the build for the whole run (others rebuild dist/ in the same tree). */
function snapshotBuild(): string {
  const app = join(TMP, 'app');
  cpSync(join(ROOT, dirname(SHIPPED_CLI)), join(app, dirname(SHIPPED_CLI)), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
  return join(app, SHIPPED_CLI);
}

const TASKSET = spawnSync('taskset', ['--version']).status === 0 && cpus().length >= 2;
const children: ChildProcess[] = [];
const ourPids = (): number[] => children.filter((c) => c.exitCode === null && c.pid !== undefined).map((c) => c.pid!);

// ---------------------------------------------------------------- fleet material

const ca = CertificateAuthority.generate('leash.local');
const caPem = ca.caPem;
function writeFleetFiles(): { caCert: string; caKey: string; keysDir: string } {
  const caCert = join(TMP, 'ca.pem');
  const caKey = join(TMP, 'ca-key.pem');
  writeFileSync(caCert, caPem);
  writeFileSync(caKey, ca.exportPrivateKeyPem(), { mode: 0o600 });
  const keysDir = join(TMP, 'jwt');
  mkdirSync(keysDir);
  writeFileSync(join(keysDir, '0001.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  return { caCert, caKey, keysDir };
}

// ---------------------------------------------------------------- processes

interface Authority {
  child: ChildProcess;
  pid: number;
  port: number;
  logPath: string;
}

async function startAuthority(tag: string, cli: string, files: ReturnType<typeof writeFleetFiles>, redisUrl?: string, nodeArgs: string[] = []): Promise<Authority> {
  const port = await freePort();
  const cfg = join(TMP, `${tag}.yaml`);
  writeFileSync(
    cfg,
    [
      `listen: "${HOST}:${port}"`,
      'trustDomain: leash.local',
      `hostnames: ["${HOST}", localhost]`,
      `ca: { certFile: "${files.caCert}", keyFile: "${files.caKey}" }`,
      `signing: { keysDir: "${files.keysDir}" }`,
      'admin: { token: { env: BENCH_ADMIN_TOKEN } }',
      ...(redisUrl ? [`redis: "${redisUrl}"`] : []),
      'log: { level: info }',
      // The bench measures the authority's throughput from a few identities on one address: no limits.
      'limits: { leases: { perMinute: 0 }, bootstraps: { perMinute: 0 } }',
      'credentials:',
      '  bench: { kind: jwt, audience: bench-api, scopes: ["bench:read"], ttl: 5m }',
      'policies:',
      '  - identities: ["join:bench-*"]',
      '    credentials: [bench]',
      '    maxTtl: 1h',
      '',
    ].join('\n'),
  );
  const logPath = join(TMP, `${tag}.log`);
  const fd = openSync(logPath, 'w');
  const nodeCmd = [...nodeArgs, cli, 'authority', '--config', cfg];
  const env = { PATH: process.env.PATH ?? '', BENCH_ADMIN_TOKEN: ADMIN_TOKEN };
  const child = TASKSET ? spawnTaskset('0', nodeCmd, env, fd) : spawnNode(nodeCmd, env, ['ignore', fd, 'pipe']);
  closeSync(fd);
  children.push(child);
  const stderr: string[] = [];
  child.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const c = await RawConn.openTls(HOST, port, { ca: caPem });
      const r = await c.request(Buffer.from(`GET /healthz HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`));
      c.destroy();
      if (r.status === 200) break;
    } catch {
      // not yet
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`authority did not start:\n${stderr.join('')}\n${readFileSync(logPath, 'utf8')}`);
    await sleep(50);
  }
  return { child, pid: child.pid!, port, logPath };
}

function spawnTaskset(cores: string, nodeArgs: string[], env: NodeJS.ProcessEnv, stdoutFd: number): ChildProcess {
  // taskset execs node: the pid is node's own, and every thread it starts inherits the mask.
  return spawn('taskset', ['-c', cores, process.execPath, ...nodeArgs], { env, stdio: ['ignore', stdoutFd, 'pipe'] });
}

async function startRedis(): Promise<{ child: ChildProcess; url: string; pid: number }> {
  const dir = join(TMP, 'redis');
  mkdirSync(dir);
  // Redis shares core 1 with the client: the authority keeps core 0 to itself.
  const redis = await startRedisServer(HOST, dir, TASKSET ? '1' : undefined);
  children.push(redis.child);
  return redis;
}

// ---------------------------------------------------------------- the API, raw

function jsonRequest(method: string, path: string, body: unknown, headers: Record<string, string> = {}): Buffer {
  const data = Buffer.from(JSON.stringify(body));
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${HOST}\r\ncontent-type: application/json\r\ncontent-length: ${data.length}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), data]);
}

interface Client {
  name: string;
  keyPem: string;
  certPem: string;
}

async function bootstrapClients(port: number, n: number, tag: string): Promise<Client[]> {
  const admin = await RawConn.openTls(HOST, port, { ca: caPem });
  const anon = await RawConn.openTls(HOST, port, { ca: caPem });
  const out: Client[] = [];
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const name = `bench-${tag}-${i}`;
    const tok = await admin.request(jsonRequest('POST', '/v1/admin/tokens', { identity: name, ttl: '5m' }, { authorization: `Bearer ${ADMIN_TOKEN}` }));
    if (tok.status !== 200) throw new Error(`token create: ${tok.status} ${tok.body.toString()}`);
    const token = (JSON.parse(tok.body.toString()) as { token: string }).token;
    const key = createIdentityKey();
    const boot = await anon.request(jsonRequest('POST', '/v1/bootstrap', { joinToken: token, csr: createCsr(key, name) }));
    if (boot.status !== 200) throw new Error(`bootstrap: ${boot.status} ${boot.body.toString()}`);
    out.push({ name, keyPem: key.privateKeyPem, certPem: (JSON.parse(boot.body.toString()) as { certificate: string }).certificate });
  }
  admin.destroy();
  anon.destroy();
  log(`bootstrapped ${n} identities in ${(performance.now() - t).toFixed(0)} ms (token + bootstrap, sequential)`);
  return out;
}

interface LoadResult {
  seconds: number;
  ok: number;
  failed: number;
  leasesPerS: number;
  latencyUs: Stats;
  authorityCpuUsPerLease: number;
  authorityCores: number;
  clientCores: number;
  redisCpuUsPerLease: number | undefined;
  foreignCores: number;
}

/** C closed-loop workers, one mTLS keep-alive connection each, POST /v1/leases back to back. */
async function hammer(port: number, clients: Client[], seconds: number, pids: { authority: number; redis?: number }): Promise<LoadResult> {
  const conns = await Promise.all(
    Array.from({ length: CONNECTIONS }, (_, i) => {
      const c = clients[i % clients.length]!;
      return RawConn.openTls(HOST, port, { ca: caPem, cert: c.certPem, key: c.keyPem });
    }),
  );
  const payload = jsonRequest('POST', '/v1/leases', { credential: 'bench' });
  const lat: number[] = [];
  let ok = 0;
  let failed = 0;
  let stop = false;
  const worker = async (c: RawConn) => {
    while (!stop) {
      const r = await c.request(payload);
      lat.push(r.latencyUs);
      if (r.status === 200) ok++;
      else {
        failed++;
        if (failed <= 3) log(`lease answered ${r.status}: ${r.body.toString().slice(0, 200)}`);
      }
    }
  };
  const a0 = cpuUs(pids.authority);
  const r0 = pids.redis ? cpuUs(pids.redis) : 0;
  const c0 = process.cpuUsage();
  const foreign = foreignMeter(ourPids);
  const w0 = performance.now();
  const timer = setTimeout(() => (stop = true), seconds * 1000);
  await Promise.all(conns.map(worker));
  clearTimeout(timer);
  const wall = (performance.now() - w0) / 1000;
  const a1 = cpuUs(pids.authority);
  const r1 = pids.redis ? cpuUs(pids.redis) : 0;
  const c1 = process.cpuUsage(c0);
  const foreignCores = foreign();
  for (const c of conns) c.destroy();
  return {
    seconds: wall,
    ok,
    failed,
    leasesPerS: ok / wall,
    latencyUs: stats(lat),
    authorityCpuUsPerLease: (a1 - a0) / Math.max(1, ok),
    authorityCores: (a1 - a0) / (wall * 1e6),
    clientCores: (c1.user + c1.system) / (wall * 1e6),
    redisCpuUsPerLease: pids.redis ? (r1 - r0) / Math.max(1, ok) : undefined,
    foreignCores,
  };
}

function describe(name: string, r: LoadResult): string {
  return `${name}: ${r.leasesPerS.toFixed(0)} leases/s, p50 ${(r.latencyUs.p50 / 1000).toFixed(2)} ms p99 ${(r.latencyUs.p99 / 1000).toFixed(2)} ms, authority ${r.authorityCpuUsPerLease.toFixed(0)} µs CPU/lease (${r.authorityCores.toFixed(2)} cores), client ${r.clientCores.toFixed(2)} cores${r.redisCpuUsPerLease !== undefined ? `, redis ${r.redisCpuUsPerLease.toFixed(0)} µs/lease` : ''}, failed ${r.failed}, others ${r.foreignCores.toFixed(2)} cores`;
}

async function scenario(tag: string, cli: string, files: ReturnType<typeof writeFleetFiles>, redis?: { url: string; pid: number }): Promise<LoadResult & { rssMB: number; hwmMB: number; auditLines: number }> {
  const auth = await startAuthority(tag, cli, files, redis?.url);
  const clients = await bootstrapClients(auth.port, IDENTITIES, tag);
  await hammer(auth.port, clients, WARM_S, { authority: auth.pid, redis: redis?.pid }); // warm-up (JIT, connections)
  const r = await hammer(auth.port, clients, SECONDS, { authority: auth.pid, redis: redis?.pid });
  log(describe(tag, r));
  const mem = memory(auth.pid);
  await stopChild(auth.child);
  const auditLines = readFileSync(auth.logPath, 'utf8').split('\n').filter((l) => l.includes('"event":"lease.issued"')).length;
  return { ...r, rssMB: mem.rssMB, hwmMB: mem.hwmMB, auditLines };
}

async function profiled(cli: string, files: ReturnType<typeof writeFleetFiles>): Promise<{ summary: ProfileSummary; result: LoadResult }> {
  const dir = join(TMP, 'prof');
  mkdirSync(dir);
  const auth = await startAuthority('prof', cli, files, undefined, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250']);
  const clients = await bootstrapClients(auth.port, IDENTITIES, 'prof');
  await hammer(auth.port, clients, WARM_S, { authority: auth.pid });
  const result = await hammer(auth.port, clients, QUICK ? 3 : 5, { authority: auth.pid });
  log(describe('profiled', result));
  await stopChild(auth.child);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('no .cpuprofile written');
  return { summary: summarise(join(dir, file), 25), result };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (TASKSET) spawnSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? '?';
  const machine = { nproc: cpus().length, cpu: cpuModel, node: process.version, date: new Date().toISOString(), pinned: TASKSET };
  log(`machine: ${machine.nproc} cores, ${machine.cpu}, node ${machine.node}; authority ${TASKSET ? 'pinned to core 0, client (and redis) to core 1' : 'not pinned (no taskset)'}; ${CONNECTIONS} connections, ${SECONDS} s`);
  const cli = snapshotBuild();
  const files = writeFleetFiles();

  const memoryRun = await scenario('memory', cli, files);
  let redisRun: Awaited<ReturnType<typeof scenario>> | undefined;
  const haveRedis = spawnSync('redis-server', ['--version']).status === 0;
  if (REDIS && haveRedis) {
    const redis = await startRedis();
    redisRun = await scenario('redis', cli, files, redis);
    await stopChild(redis.child);
  } else if (REDIS) log('redis-server not found: Redis run skipped');
  const prof = PROFILE ? await profiled(cli, files) : undefined;

  const ms = (us: number) => (us / 1000).toFixed(2);
  const met = (ok: boolean) => (ok ? 'met' : '**not met**');
  const runs: Array<[string, Awaited<ReturnType<typeof scenario>>]> = [['in-memory store', memoryRun], ...(redisRun ? [['Redis store', redisRun] as [string, typeof redisRun]] : [])];
  const table = [
    `| metric | ${runs.map(([n]) => n).join(' | ')} |`,
    `| --- | ${runs.map(() => '---').join(' | ')} |`,
    `| leases/s (jwt, ${CONNECTIONS} conns, ${SECONDS} s) | ${runs.map(([, r]) => r.leasesPerS.toFixed(0)).join(' | ')} |`,
    `| latency p50 (ms) | ${runs.map(([, r]) => ms(r.latencyUs.p50)).join(' | ')} |`,
    `| latency p99 (ms) | ${runs.map(([, r]) => ms(r.latencyUs.p99)).join(' | ')} |`,
    `| latency p99.9 (ms) | ${runs.map(([, r]) => ms(r.latencyUs.p999)).join(' | ')} |`,
    `| authority CPU per lease (µs) | ${runs.map(([, r]) => r.authorityCpuUsPerLease.toFixed(0)).join(' | ')} |`,
    `| authority cores used | ${runs.map(([, r]) => r.authorityCores.toFixed(2)).join(' | ')} |`,
    `| redis-server CPU per lease (µs) | ${runs.map(([, r]) => (r.redisCpuUsPerLease === undefined ? '–' : r.redisCpuUsPerLease.toFixed(0))).join(' | ')} |`,
    `| client cores used | ${runs.map(([, r]) => r.clientCores.toFixed(2)).join(' | ')} |`,
    `| failed requests | ${runs.map(([, r]) => String(r.failed)).join(' | ')} |`,
    `| authority RSS at end / peak (MB) | ${runs.map(([, r]) => `${r.rssMB.toFixed(0)} / ${r.hwmMB.toFixed(0)}`).join(' | ')} |`,
    `| lease.issued audit lines written | ${runs.map(([, r]) => String(r.auditLines)).join(' | ')} |`,
    `| other processes (cores) | ${runs.map(([, r]) => r.foreignCores.toFixed(2)).join(' | ')} |`,
    `| target ≥ ${TARGET_LEASES_PER_S} leases/s on one core | ${runs.map(([, r]) => met(r.leasesPerS >= TARGET_LEASES_PER_S)).join(' | ')} |`,
  ].join('\n');
  const profText = prof
    ? [
        `\nCPU profile (in-memory store, ${prof.result.leasesPerS.toFixed(0)} leases/s under the profiler, ${prof.summary.busyMs.toFixed(0)} ms busy of ${prof.summary.totalMs.toFixed(0)} ms sampled):`,
        '',
        '| area | self ms | % of busy |',
        '| --- | --- | --- |',
        ...prof.summary.byArea.slice(0, 16).map((a) => `| ${a.area} | ${a.selfMs.toFixed(0)} | ${a.pct.toFixed(1)} |`),
        '',
        '| top self-time function | where | % of busy |',
        '| --- | --- | --- |',
        ...prof.summary.top.map((f) => `| ${f.name} | ${f.where} | ${f.pct.toFixed(1)} |`),
      ].join('\n')
    : '';
  process.stdout.write(`\n## leash authority issuance benchmark ${QUICK ? '(QUICK)' : ''}\n\nmachine: ${machine.nproc} × ${machine.cpu}, node ${machine.node}, ${machine.date}\n\n${table}\n${profText}\n`);
  writeFileSync(join(HERE, 'authority-last-run.json'), JSON.stringify({ machine, connections: CONNECTIONS, seconds: SECONDS, memory: memoryRun, redis: redisRun, profile: prof }, null, 2));
  for (const c of children) await stopChild(c);
  if (existsSync(TMP)) rmSync(TMP, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(TMP, { recursive: true, force: true });
  process.exit(1);
});
