import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { joinInstance, readStream, tapChannel, type ChannelTap, type Instance } from '../helpers/revoke-authority.js';
import { CLI, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

/**
 * `leash revoke` as an operator runs it (DESIGN §3), against a spawned `leash authority`
 * with Redis: one line on stdout per revocation, exit 1 with a one-line reason otherwise.
 */
const run = promisify(execFile);
const ADMIN = 'cli-revoke-admin-token-0123456789abcdef';
const STREAM = 'leash:revocations';

let redis: TestRedis;
let client: Redis;
let authority: Spawned;
let tap: ChannelTap;
let caPem: string;
let url: string;
let env: Record<string, string>;
const instances: Instance[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  const ca = CertificateAuthority.generate('leash.local');
  caPem = ca.caPem;
  const caFile = writeTemp('ca.pem', ca.caPem);
  const keyFile = writeTemp('ca-key.pem', ca.exportPrivateKeyPem());
  const config = writeTemp(
    'authority.yaml',
    JSON.stringify({
      listen: '127.0.0.1:0',
      hostnames: ['127.0.0.1'],
      ca: { certFile: caFile, keyFile },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      redis: redis.url,
      credentials: {
        api: { kind: 'static', source: { env: 'API_SECRET' }, ttl: '10m' },
        search: { kind: 'jwt', audience: 'search-api', ttl: '5m' },
      },
      policies: [{ identities: ['join:agent-*'], credentials: ['api', 'search'] }],
    }),
  );
  authority = spawnLeash(['authority', '--config', config], { LEASH_ADMIN_TOKEN: ADMIN, API_SECRET: 'sk-cli-revoke-static-secret' });
  const started = await authority.waitFor((l) => l.msg === 'leash authority started');
  url = `https://127.0.0.1:${String(started.listen).split(':').pop()}`;
  env = { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: url, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN };
  tap = await tapChannel(redis.url, STREAM);
}, 30_000);

afterAll(async () => {
  for (const i of instances) i.close();
  tap?.close();
  authority?.child.kill('SIGTERM');
  if (authority) expect(await authority.exit).toBe(0);
  client?.disconnect();
  await redis?.stop();
});

const leash = (...args: string[]) => run(process.execPath, [CLI, ...args], { env });
const fails = (...args: string[]) =>
  leash(...args).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

async function instance(name: string): Promise<Instance> {
  const { stdout: token } = await leash('token', 'create', '--identity', name);
  const i = await joinInstance(url, caPem, token.trim());
  instances.push(i);
  return i;
}

async function lease(i: Instance, credential: string): Promise<string> {
  const a = await i.lease(credential);
  expect(a.status, JSON.stringify(a.body)).toBe(200);
  return a.body.lease!;
}

const listed = async () => JSON.parse((await leash('leases', '--json')).stdout) as Array<{ id: string; instance: string; credential: string }>;
const LINE = /^revoked (lease|instance|credential|all) (\S+) \((\d+-\d+)\)\n$/;

/** The printed line names a revocation that is in the stream and was sent on the channel with the same fields. */
async function published(stdout: string, expected: Record<string, string>) {
  const m = LINE.exec(stdout);
  expect(m, stdout).not.toBeNull();
  const [, scope, target, id] = m!;
  expect({ scope, target }).toEqual({ scope: expected.scope, target: expected.target });
  const entry = (await readStream(client, STREAM)).find((e) => e.id === id);
  expect(entry?.fields).toEqual({ at: expect.any(String), reason: '', by: 'admin', ...expected });
  await expect.poll(() => tap.messages.find((x) => x.id === id), { timeout: 2_000, interval: 20 }).toEqual({ id, ...entry!.fields });
  return id!;
}

describe('leash revoke (spawned CLI, spawned authority, Redis)', () => {
  it('--lease: that lease goes; the line names it; the same id again → published anyway, and the line says so', async () => {
    const one = await instance('agent-1');
    const l = await lease(one, 'api');
    const keep = await lease(one, 'search');
    const r = await leash('revoke', '--lease', l, '--reason', 'seen in a log', '--actor', 'alice');
    expect(r.stderr).toBe('');
    await published(r.stdout, { scope: 'lease', target: l, reason: 'seen in a log', by: 'alice' });
    expect((await listed()).map((x) => x.id)).toEqual([keep]);
    // The table, leash leases' default: one line per lease (id, credential, fingerprint, expiry, holder), never the value.
    const [row] = await listed();
    const table = (await leash('leases')).stdout;
    expect(table).toMatch(new RegExp(`^${keep}  search  sha256:[0-9a-f]{12}  expires \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z  ${row!.instance}\n$`));
    expect((await leash('leases', '--credential', 'api')).stdout).toBe('(no active leases)\n');

    // Unknown now (or lost with Redis' data): revoked anyway, and said so (issue 7).
    const again = await leash('revoke', '--lease', l);
    expect(again.stderr).toBe('');
    expect(again.stdout).toMatch(new RegExp(`^revoked lease ${l} \\(\\d+-\\d+\\); unknown lease: revocation published anyway\\n$`));
  });

  it('--instance: cut off (401 on its open connection), its leases go, another instance keeps leasing; unknown → revoked anyway, said so', async () => {
    const two = await instance('agent-2');
    const three = await instance('agent-3');
    await lease(two, 'api');
    await lease(two, 'search');
    const threeLease = await lease(three, 'api');
    const r = await leash('revoke', '--instance', 'join:agent-2', '--reason', 'pod compromised');
    await published(r.stdout, { scope: 'instance', target: 'spiffe://leash.local/join/agent-2', reason: 'pod compromised' });
    const refused = await two.lease('api');
    expect(refused.status).toBe(401);
    expect(refused.body.error).toEqual({ code: 'LEASH_ERR_UNAUTHENTICATED', message: 'identity revoked' });
    expect((await two.renew()).status).toBe(401);
    expect((await listed()).filter((x) => x.instance === two.identity)).toEqual([]);
    expect((await listed()).map((x) => x.id)).toContain(threeLease);
    expect((await three.lease('search')).status).toBe(200);

    // The full SPIFFE ID works too, and revoking again is accepted.
    const full = await leash('revoke', '--instance', two.identity);
    expect(full.stdout).toMatch(LINE);
    expect((await leash('revoke', '--instance', 'join:agent-99')).stdout).toMatch(/^revoked instance spiffe:\/\/leash\.local\/join\/agent-99 \(\d+-\d+\); unknown instance: revoked and published anyway\n$/);
    const bad = await fails('revoke', '--instance', 'spiffe://elsewhere/x');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^leash: authority refused \(400 LEASH_ERR_AUTHORITY_BAD_REQUEST\): instance: not an identity of trust domain leash\.local\n$/);
  });

  it('--credential and --all: every lease of it / every lease; instances lease again; unknown credential → 404', async () => {
    const four = await instance('agent-4');
    const five = await instance('agent-5');
    await lease(four, 'api');
    await lease(five, 'api');
    const keep = await lease(five, 'search');
    const r = await leash('revoke', '--credential', 'api');
    await published(r.stdout, { scope: 'credential', target: 'api' });
    expect((await listed()).filter((x) => x.credential === 'api')).toEqual([]);
    expect((await listed()).map((x) => x.id)).toContain(keep);
    expect((await four.lease('api')).status).toBe(200);
    expect(await fails('revoke', '--credential', 'nope')).toEqual({ code: 1, stdout: '', stderr: 'leash: authority refused (404 LEASH_ERR_NOT_FOUND): no such credential\n' });

    const all = await leash('revoke', '--all', '--reason', 'incident 7', '--actor', 'oncall');
    await published(all.stdout, { scope: 'all', target: '*', reason: 'incident 7', by: 'oncall' });
    expect(await listed()).toEqual([]);
    expect((await five.lease('search')).status).toBe(200);
  });

  it('usage: exactly one scope; --help; no admin token; nothing published for a refused command', async () => {
    const before = (await readStream(client, STREAM)).length;
    for (const args of [[], ['--all', '--lease', 'x'], ['--instance', 'a', '--credential', 'b'], ['--lease', '']]) {
      const r = await fails('revoke', ...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(r.stderr).toMatch(/^leash: /);
    }
    expect((await fails('revoke')).stderr).toBe('leash: leash revoke needs exactly one of --lease ID, --instance ID, --credential NAME, --all\n');
    expect((await fails('revoke', '--all', '--actor', 'not ok!')).stderr).toMatch(/^leash: --actor: /);
    expect((await fails('revoke', '--all', '--bogus')).stderr).toMatch(/^leash: .*see leash revoke --help/);
    const help = await leash('revoke', '--help');
    expect(help.stdout).toContain('Usage: leash revoke (--lease ID | --instance ID | --credential NAME | --all) [--reason TEXT]');
    expect((await leash('--help')).stdout).toContain('leash revoke --lease ID | --instance ID | --credential NAME | --all [--reason TEXT]');
    const noToken = await run(process.execPath, [CLI, 'revoke', '--all'], { env: { ...env, LEASH_ADMIN_TOKEN: 'wrong' } }).catch((e: { code: number; stderr: string }) => e);
    expect((noToken as { code: number }).code).toBe(1);
    expect((noToken as { stderr: string }).stderr).toBe('leash: authority refused (401 LEASH_ERR_UNAUTHENTICATED): admin token is wrong\n');
    expect((await readStream(client, STREAM)).length).toBe(before);
  });

  it('no secret in the stream, the channel, the audit stream or the authority log', async () => {
    const all = JSON.stringify(await client.xrange(STREAM, '-', '+')) + JSON.stringify(tap.messages) + JSON.stringify(await client.xrange('leash:audit', '-', '+')) + authority.lines.join('\n');
    expect(tap.messages.length).toBe(7); // lease (twice: the second unknown), instance (twice, and an unknown one), credential, all
    expect(all).not.toContain('sk-cli-revoke-static-secret');
    expect(all).not.toContain(ADMIN);
  });
});
