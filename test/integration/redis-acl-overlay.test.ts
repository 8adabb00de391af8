import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { parseAllDocuments } from 'yaml';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { collectInjector } from '../../src/config/injector.js';
import { readDocument } from '../../src/config/load.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { rawCommand } from '../helpers/bus-redis.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { freePort } from '../helpers/ports.js';
import { documentedSidecarAcl, documentedSidecarAclWith, shellWords } from '../helpers/redis-acl.js';
import { CLI, CLI_MISSING, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * deploy/overlays/redis-in-cluster-subscribed: Redis with ACL users, written by an init
 * container's script. The script is taken exactly as `kubectl kustomize` renders it, run
 * with `sh` here (dash, and busybox sh with busybox's tools as in the image, where
 * busybox is installed) with test passwords, and a real
 * redis-server is started with the file it writes and the container's own arguments. Then:
 * no default user; the authority's user does what the authority does; the sidecars' user
 * does what a sidecar does and nothing of the authority's; its rules are the ones
 * docs/revocation.md documents; and a real authority and sidecar, configured as the overlay
 * configures them, carry a revocation through it. There is no cluster here: the pod itself
 * (the init container in busybox, the kubelet, the NetworkPolicy) is not exercised.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OVERLAY = join(ROOT, 'deploy', 'overlays', 'redis-in-cluster-subscribed');
const HAVE_KUBECTL = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 10_000 }).status === 0;
if (!HAVE_KUBECTL) console.warn('redis-acl-overlay: kubectl not found on PATH: the overlay is NOT rendered or tested (install kubectl)');

const AUTHORITY_PASSWORD = 'a0f3c1d2e4b5a6978812authority-not-a-secret';
const SIDECAR_PASSWORD = '5e1d0c9b8a7f6e5d4c3bsidecar-not-a-secret';
const SERVICE_HOST = 'leash-redis.leash-system.svc:6379';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  readinessProbe?: { exec?: { command: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}
interface K8sObject {
  kind: string;
  metadata: { name: string };
  spec?: { template?: { spec: { initContainers?: Container[]; containers: Container[]; volumes?: Array<{ name: string; emptyDir?: unknown }> } } };
  data?: Record<string, string>;
}

let objects: K8sObject[] = [];
beforeAll(() => {
  if (!HAVE_KUBECTL) return;
  const text = execFileSync('kubectl', ['kustomize', OVERLAY], { encoding: 'utf8', timeout: 60_000 });
  objects = parseAllDocuments(text).map((d) => d.toJS() as K8sObject);
}, 60_000);

const find = (kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in the rendered overlay`);
  return o;
};
const redisPod = () => find('StatefulSet', 'leash-redis').spec!.template!.spec;
const initContainer = () => redisPod().initContainers!.find((c) => c.name === 'acl')!;
const redisContainer = () => redisPod().containers.find((c) => c.name === 'redis')!;
/** The script, exactly as the init container runs it (`sh -c SCRIPT`). */
const script = () => {
  const command = initContainer().command!;
  expect(command.slice(0, 2)).toEqual(['sh', '-c']);
  expect(command).toHaveLength(3);
  return command[2]!;
};
/** The init container's variable holding the password of Secret key `key` (authority, sidecar). */
const passwordVar = (key: string) => {
  const v = initContainer().env!.find((e) => e.valueFrom?.secretKeyRef?.key === key);
  if (!v) throw new Error(`the init container has no variable from Secret key ${key}`);
  return v.name;
};
const argAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

const dirs: string[] = [];

/**
 * Where the script runs: the system's `sh` (dash on Debian), and — where busybox is
 * installed — busybox's sh with busybox's own sha256sum, cut, cat and mv alone on PATH, as
 * in the alpine image.
 */
const BUSYBOX = spawnSync('busybox', ['--list'], { encoding: 'utf8' });
if (BUSYBOX.status !== 0) console.warn('redis-acl-overlay: busybox not found: the ACL script runs with the system sh only, not with busybox sh as in the image');
function busyboxPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'leash-busybox-'));
  const busybox = execFileSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).trim();
  for (const applet of ['sh', 'sha256sum', 'cut', 'cat', 'mv']) symlinkSync(busybox, join(dir, applet));
  return dir;
}
const SHELLS = [{ shell: 'sh', path: () => process.env.PATH ?? '/usr/bin:/bin' }, ...(BUSYBOX.status === 0 ? [{ shell: 'busybox sh', path: busyboxPath }] : [])];

/** Runs the script with `sh -c` and the given passwords; the ACL file is written into a new temp dir. */
function runScript(passwords: { authority?: string; sidecar?: string }, path = SHELLS[0]!.path()): { status: number | null; stderr: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'leash-redis-acl-'));
  dirs.push(dir);
  const file = join(dir, 'users.acl');
  const env: Record<string, string> = { PATH: path, ACL_FILE: file };
  if (passwords.authority !== undefined) env[passwordVar('authority')] = passwords.authority;
  if (passwords.sidecar !== undefined) env[passwordVar('sidecar')] = passwords.sidecar;
  // Looked up on the PATH given: busybox's sh in its directory.
  const r = spawnSync('sh', ['-c', script()], { env, encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stderr: r.stderr, file };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** redis-server with the container's arguments, its --dir and --aclfile moved here, on loopback. */
async function startRedis(aclFile: string): Promise<{ port: number; stop(): Promise<void> }> {
  const args = [...redisContainer().args!];
  expect(args[0]).toBe('redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'leash-redis-acl-data-'));
  dirs.push(dir);
  args[args.indexOf('--dir') + 1] = dir;
  args[args.indexOf('--aclfile') + 1] = aclFile;
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(process.env.LEASH_TEST_REDIS_SERVER ?? 'redis-server', [...args.slice(1), '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--daemonize', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const deadline = Date.now() + 5_000;
    // With the default user off every reply is -NOAUTH: any reply means it is up.
    while (Date.now() < deadline && child.exitCode === null && (await rawCommand(port, 'PING')) === undefined) await sleep(20);
    if (child.exitCode === null && Date.now() < deadline) {
      process.once('exit', () => child.kill('SIGKILL'));
      return {
        port,
        stop: async () => {
          if (child.exitCode !== null) return;
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGKILL');
          await exited;
        },
      };
    }
    child.kill('SIGKILL');
    lastError = output.trim();
  }
  throw new Error(`redis-server did not start with the overlay's arguments: ${lastError}`);
}

let redis: Awaited<ReturnType<typeof startRedis>> | undefined;
const clients: Redis[] = [];
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Spawned | undefined;
afterEach(async () => {
  sidecar?.child.kill('SIGKILL');
  await upstream?.close();
  await authority?.stop();
  for (const c of clients.splice(0)) c.disconnect();
  await redis?.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  sidecar = upstream = authority = redis = undefined;
});

const connect = (port: number, username?: string, password?: string) => {
  const c = new Redis({ host: '127.0.0.1', port, username, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => {});
  clients.push(c);
  return c;
};
const refused = (p: Promise<unknown>) => expect(p).rejects.toThrow(/NOPERM/);

/** The `user NAME …` line of an ACL file, as its words after the name. */
function aclLine(text: string, user: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(`user ${user} `));
  if (!line) throw new Error(`no user ${user} in the ACL file`);
  return shellWords(line).slice(2);
}

describe.skipIf(!HAVE_KUBECTL)('deploy/overlays/redis-in-cluster-subscribed: the Redis ACL file', () => {
  it('the init container, the redis container, the Secret and the probe fit together', () => {
    const init = initContainer();
    const server = redisContainer();
    expect(init.image).toBe(server.image);
    const aclFile = init.env!.find((e) => e.name === 'ACL_FILE')!.value!;
    expect(argAfter(server.args!, '--aclfile')).toBe(aclFile);
    // The file is written into an emptyDir both containers mount at its directory; redis reads only.
    const mountOf = (c: Container) => c.volumeMounts!.find((m) => m.mountPath === dirname(aclFile))!;
    expect(mountOf(init).name).toBe(mountOf(server).name);
    expect(mountOf(server).readOnly).toBe(true);
    expect(redisPod().volumes!.find((v) => v.name === mountOf(init).name)!.emptyDir).toBeDefined();
    // Both passwords from Secret leash-redis-users.
    const refs = init.env!.filter((e) => e.valueFrom).map((e) => e.valueFrom!.secretKeyRef);
    expect(refs).toEqual([{ name: 'leash-redis-users', key: 'authority' }, { name: 'leash-redis-users', key: 'sidecar' }]);
    // The kubelet expands $(VAR) of the container's variables and $$ in `command`: the script
    // must have neither, so that what runs here is what runs in the pod.
    expect(script()).not.toContain('$$');
    expect(script().match(/\$\([A-Za-z_][A-Za-z0-9_]*\)/g)).toBeNull();
    // The readiness probe authenticates as the sidecar user, and fails on an error reply (-e).
    expect(server.readinessProbe!.exec!.command).toEqual(['redis-cli', '-e', '--user', 'leash-sidecar', 'ping']);
    expect(server.env).toEqual([{ name: 'REDISCLI_AUTH', valueFrom: { secretKeyRef: { name: 'leash-redis-users', key: 'sidecar' } } }]);
  });

  it.each(SHELLS)('refuses a missing, empty or shared password, and writes no file ($shell)', ({ path }) => {
    const bin = path();
    for (const passwords of [{ sidecar: SIDECAR_PASSWORD }, { authority: AUTHORITY_PASSWORD }, { authority: '', sidecar: SIDECAR_PASSWORD }, { authority: SIDECAR_PASSWORD, sidecar: SIDECAR_PASSWORD }]) {
      const r = runScript(passwords, bin);
      expect(r.status, JSON.stringify(passwords)).not.toBe(0);
      expect(r.stderr).toMatch(/leash-redis-users/);
      expect(existsSync(r.file)).toBe(false);
    }
  });

  it.each(SHELLS)('writes each password as its SHA-256 only, in a file only its owner reads ($shell)', ({ path }) => {
    const r = runScript({ authority: AUTHORITY_PASSWORD, sidecar: SIDECAR_PASSWORD }, path());
    expect(r.status, r.stderr).toBe(0);
    const text = readFileSync(r.file, 'utf8');
    expect(text).not.toContain(AUTHORITY_PASSWORD);
    expect(text).not.toContain(SIDECAR_PASSWORD);
    expect(text).not.toMatch(/(^|\s)>/m);
    expect(aclLine(text, 'leash-authority')).toContain(`#${sha256(AUTHORITY_PASSWORD)}`);
    expect(aclLine(text, 'leash-sidecar')).toContain(`#${sha256(SIDECAR_PASSWORD)}`);
    expect(text.split('\n').filter((l) => l.startsWith('user ')).map((l) => l.split(' ')[1])).toEqual(['default', 'leash-authority', 'leash-sidecar']);
    expect(aclLine(text, 'default')).toContain('off');
    expect(statSync(r.file).mode & 0o077).toBe(0);
    // Every shell writes the same file (the tests below start Redis on the system sh's).
    expect(text).toBe(readFileSync(runScript({ authority: AUTHORITY_PASSWORD, sidecar: SIDECAR_PASSWORD }).file, 'utf8'));
  });

  it("grants the sidecar user exactly docs/revocation.md's rules", async () => {
    const r = runScript({ authority: AUTHORITY_PASSWORD, sidecar: SIDECAR_PASSWORD });
    expect(r.status, r.stderr).toBe(0);
    // Word for word (order matters in an ACL), the password as the doc's placeholder.
    const line = aclLine(readFileSync(r.file, 'utf8'), 'leash-sidecar').map((w) => (w === `#${sha256(SIDECAR_PASSWORD)}` ? '>PASSWORD' : w));
    expect(line).toEqual(documentedSidecarAcl());
    // And as Redis reads them: the doc's ACL SETUSER gives a user equal to the file's.
    redis = await startRedis(r.file);
    const admin = connect(redis.port, 'leash-authority', AUTHORITY_PASSWORD);
    await admin.call('ACL', 'SETUSER', 'documented-sidecar', ...documentedSidecarAclWith('x'));
    const user = async (name: string) => {
      const flat = (await admin.call('ACL', 'GETUSER', name)) as unknown[];
      const o: Record<string, unknown> = {};
      for (let i = 0; i < flat.length; i += 2) o[String(flat[i])] = flat[i + 1];
      delete o.passwords;
      return o;
    };
    expect(await user('leash-sidecar')).toEqual(await user('documented-sidecar'));
  });

  it('with it, a real redis-server: no default user, the authority may do everything, the sidecar only subscribe, read and append its audit', async () => {
    const r = runScript({ authority: AUTHORITY_PASSWORD, sidecar: SIDECAR_PASSWORD });
    expect(r.status, r.stderr).toBe(0);
    redis = await startRedis(r.file);
    const { port } = redis;

    // No one without a password: the default user is off, wrong passwords are refused.
    expect(await rawCommand(port, 'PING')).toMatch(/^-NOAUTH/);
    expect(await rawCommand(port, 'AUTH default ""')).toMatch(/^-WRONGPASS/);
    await expect(connect(port).get('x')).rejects.toThrow(/NOAUTH/);
    expect(await rawCommand(port, `AUTH leash-authority ${SIDECAR_PASSWORD}`)).toMatch(/^-WRONGPASS/);
    expect(await rawCommand(port, `AUTH leash-sidecar ${AUTHORITY_PASSWORD}`)).toMatch(/^-WRONGPASS/);
    expect(await rawCommand(port, `AUTH leash-sidecar ${SIDECAR_PASSWORD}`)).toMatch(/^\+OK/);

    // The readiness probe, as the container runs it (its REDISCLI_AUTH the sidecar password).
    const probe = redisContainer().readinessProbe!.exec!.command;
    const runProbe = (pw: string) => spawnSync(probe[0]!, ['-h', '127.0.0.1', '-p', String(port), ...probe.slice(1)], { env: { PATH: process.env.PATH, REDISCLI_AUTH: pw }, encoding: 'utf8', timeout: 10_000 });
    const ok = runProbe(SIDECAR_PASSWORD);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout.trim()).toBe('PONG');
    expect(runProbe('wrong').status).not.toBe(0);

    // The authority: its records, the revocation stream and channel, the audit stream, CONFIG
    // (it checks persistence at start).
    const a = connect(port, 'leash-authority', AUTHORITY_PASSWORD);
    expect(await a.set('leash:join:0123', '{}')).toBe('OK');
    expect(await a.get('leash:join:0123')).toBe('{}');
    expect(await a.del('leash:join:0123')).toBe(1);
    await a.set('leash:lease:x', '{}');
    expect(await a.xadd('leash:revocations', '*', 'scope', 'lease', 'target', 'x')).toMatch(/^\d+-\d+$/);
    expect(await a.publish('leash:revocations', '{}')).toBe(0);
    expect(await a.xadd('leash:audit', '*', 'event', 'test')).toMatch(/^\d+-\d+$/);
    expect(await a.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await a.keys('leash:*')).toContain('leash:lease:x');

    // The sidecar: subscribe to the revocation channel and receive, read the stream and the
    // epoch (never write it: a SET that may create it may also overwrite it, and a forged
    // epoch makes every subscribed sidecar drop and re-lease all it holds), append to the
    // audit stream.
    const sub = connect(port, 'leash-sidecar', SIDECAR_PASSWORD);
    const received = new Promise<string>((resolve) => sub.on('message', (_ch, m: string) => resolve(m)));
    await sub.subscribe('leash:revocations');
    expect(await a.publish('leash:revocations', 'hello')).toBe(1);
    expect(await received).toBe('hello');
    const s = connect(port, 'leash-sidecar', SIDECAR_PASSWORD);
    expect(await s.ping()).toBe('PONG');
    expect(await s.xrange('leash:revocations', '-', '+')).toHaveLength(1);
    expect(await s.xrevrange('leash:revocations', '+', '-', 'COUNT', 1)).toHaveLength(1);
    expect(await s.call('XINFO', 'STREAM', 'leash:revocations')).toBeDefined();
    await refused(s.set('{leash:revocations}:epoch', 'e1', 'NX'));
    await refused(s.set('{leash:revocations}:epoch', 'forged'));
    expect(await a.set('{leash:revocations}:epoch', 'e1', 'NX')).toBe('OK');
    expect(await s.get('{leash:revocations}:epoch')).toBe('e1');
    expect(await s.xadd('leash:audit', 'MAXLEN', '~', '1000', '*', 'event', 'usage')).toMatch(/^\d+-\d+$/);
    expect(await s.call('CLIENT', 'SETNAME', 'leash-sidecar')).toBe('OK');
    // ... and nothing of the authority's: its records, the key list, publishing, writing the
    // revocation stream, other channels, the server's configuration.
    await refused(s.set('leash:join:0123', '{"identity":"prod-db-1","expiresAtMs":1}'));
    await refused(s.get('leash:lease:x'));
    await refused(s.del('leash:revoked:instance:spiffe://leash.local/ns/a/sa/b/pod/c'));
    await refused(s.keys('*'));
    await refused(s.publish('leash:revocations', '{}'));
    await refused(s.xadd('leash:revocations', '*', 'scope', 'all'));
    await refused(s.del('leash:revocations'));
    await refused(s.config('GET', 'appendonly'));
    await refused(s.call('ACL', 'LIST'));
    await refused(connect(port, 'leash-sidecar', SIDECAR_PASSWORD).subscribe('other'));
  });

  it('a real authority and an injected-style sidecar, configured as the overlay configures them, carry a revocation through it', async () => {
    if (!existsSync(CLI)) throw new Error(CLI_MISSING);
    const r = runScript({ authority: AUTHORITY_PASSWORD, sidecar: SIDECAR_PASSWORD });
    expect(r.status, r.stderr).toBe(0);
    redis = await startRedis(r.file);
    const here = `127.0.0.1:${redis.port}`;

    // The authority's LEASH_REDIS_URL as the kubelet expands it (its password var comes first).
    const env = find('Deployment', 'leash-authority').spec!.template!.spec.containers[0]!.env!;
    const urlAt = env.findIndex((e) => e.name === 'LEASH_REDIS_URL');
    const pwVar = env.find((e) => e.valueFrom?.secretKeyRef?.name === 'leash-redis-users')!;
    expect(pwVar.valueFrom!.secretKeyRef!.key).toBe('authority');
    expect(env.indexOf(pwVar)).toBeLessThan(urlAt);
    const authorityUrl = env[urlAt]!.value!.replace(`$(${pwVar.name})`, AUTHORITY_PASSWORD).replace(SERVICE_HOST, here);
    expect(new URL(authorityUrl).username).toBe('leash-authority');
    // Its config reads ${LEASH_REDIS_URL}, unchanged from the base.
    const authorityYaml = readDocument(find('ConfigMap', 'leash-authority').data!['authority.yaml']!, { LEASH_REDIS_URL: authorityUrl, LEASH_ADMIN_TOKEN: 'x' });
    expect(authorityYaml.redis).toBe(authorityUrl);
    authority = await startAuthority({
      redis: authorityYaml.redis,
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });

    // The sidecar's Redis section as the injector writes it: { url, password: { file } }, the
    // file projected from Secret leash-redis-sidecar in the pod's namespace.
    const injector = collectInjector(readDocument(find('ConfigMap', 'leash-injector').data!['injector.yaml']!, {}));
    expect(injector.problems).toEqual([]);
    const { sidecar: section, secretFiles } = injector.value!;
    expect(secretFiles).toEqual([{ path: 'revocations-redis-password', secretKeyRef: { name: 'leash-redis-sidecar', key: 'password' } }]);
    const written = (section.revocations as { redis: { url: string; password: { file: string } } }).redis;
    expect(written.password).toEqual({ file: '/var/run/secrets/leash/revocations-redis-password' });
    // The projected file, here in a temporary directory.
    const target = { ...written, password: { file: writeTemp(secretFiles[0]!.path, SIDECAR_PASSWORD) } };
    expect(new URL(target.url).username).toBe('leash-sidecar');
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const config = writeTemp(
      'sidecar.json',
      JSON.stringify({
        ...section,
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        instance: { id: 'sc-overlay' },
        revocations: { ...(section.revocations as object), redis: { ...target, url: target.url.replace(SERVICE_HOST, here) } },
        authority: { url: authority.url, caFile: writeTemp('ca.pem', authority.caPem), bootstrap: { joinToken: { env: 'JT' } } },
        audit: { flushInterval: '100ms' },
        routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      }),
    );
    sidecar = spawnLeash(['sidecar', '--config', config], { JT: await authority.token('agent-1') });
    const started = await sidecar.waitFor((l) => l.msg === 'leash sidecar started');
    const acquired = await sidecar.waitFor((l) => l.event === 'credential.acquired');
    const proxy = `http://127.0.0.1:${String(started.listen).split(':').pop()}`;
    expect((await fetch(`${proxy}/search/v1/x`)).status).toBe(200);

    // Its audit entries reach the stream; a revocation published as the authority's user is applied.
    const admin = connect(redis.port, 'leash-authority', AUTHORITY_PASSWORD);
    const events = async () => (await admin.xrange('leash:audit', '-', '+')).filter(([, f]) => f.includes('sc-overlay')).map(([, f]) => f[f.indexOf('event') + 1]);
    await waitFor(async () => (await events()).includes('usage'), { timeoutMs: 5_000, intervalMs: 50 });
    await new RedisRevocationPublisher(admin, 3_600_000).publish({ scope: 'lease', target: String(acquired.lease), reason: 'test', by: 'test' });
    await sidecar.waitFor((l) => l.event === 'credential.revoked');
    await sidecar.waitFor((l) => l.event === 'credential.acquired' && l.lease !== acquired.lease);
    expect([...sidecar.lines, sidecar.stderr.join('')].filter((l) => /NOPERM|NOAUTH|WRONGPASS|flush failed|revocation channel not up|can read the authority/.test(l))).toEqual([]);
    expect(authority.logs.lines.filter((l) => /NOPERM|NOAUTH|WRONGPASS/.test(l))).toEqual([]);
  }, 30_000);
});
