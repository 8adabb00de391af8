import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { SECRET_REF_PATHS } from '../../src/config/injector-secrets.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { documentedSidecarAclWith } from '../helpers/redis-acl.js';
import { api, bootstrap } from '../helpers/replicas.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The Redis user docs/revocation.md ("A Redis user for sidecars") gives sidecars that share
 * the authority's Redis, applied to a real redis-server: with it a sidecar subscribes,
 * applies revocations and writes its usage summaries, and cannot touch the authority's
 * keys (join tokens, leases, revocation marks) or publish revocations. The rules are read
 * from the doc itself (test/helpers/redis-acl.ts), so the doc cannot drift from what is
 * tested; deploy/overlays/redis-in-cluster-subscribed is held to the same rules
 * (redis-acl-overlay.test.ts).
 */
const SIDECAR_ACL = documentedSidecarAclWith('sidecar-password-not-a-secret');

let redis: TestRedis | undefined;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Spawned | undefined;
let admin: Redis | undefined;
afterEach(async () => {
  sidecar?.child.kill('SIGKILL');
  await upstream?.close();
  await authority?.stop();
  admin?.disconnect();
  await redis?.stop();
  sidecar = upstream = authority = admin = redis = undefined;
});

/**
 * The two ways a sidecar is given that user's password: in the URL, or (as the injector
 * writes it, the value from a Kubernetes Secret projected into the sidecar's volume)
 * `{ url, password: { file } }` with the user alone in the URL. The file is the one the
 * injector names (injector-secrets.ts).
 */
const FORMS = [
  { form: 'the password in the URL', revocations: (url: string) => url, env: {} },
  {
    form: '{ url, password: { file } }, as an injected sidecar has it',
    // The injector projects the Secret into the sidecar's own volume under this name.
    revocations: (url: string) => ({
      url: url.replace(':sidecar-password-not-a-secret@', '@'),
      password: { file: writeTemp(SECRET_REF_PATHS['revocations.redis.password']!, 'sidecar-password-not-a-secret\n') },
    }),
    env: {},
  },
];

/**
 * Redis with the documented sidecar user, an authority and an upstream, and a sidecar
 * process (instance `id`) whose revocations.redis is `revocations(url of that user)`.
 */
async function startWithSidecarUser(
  id: string,
  revocations: (url: string) => unknown,
  extra: Record<string, unknown> = {},
  env: Record<string, string> = {},
): Promise<{ sidecarRedis: string; started: Record<string, unknown>; sidecar: NonNullable<typeof sidecar>; admin: Redis }> {
  redis = await startRedis();
  const db = (admin = new Redis(redis.url));
  await db.call('ACL', 'SETUSER', 'leash-sidecar', ...SIDECAR_ACL);
  const sidecarRedis = `redis://leash-sidecar:sidecar-password-not-a-secret@127.0.0.1:${new URL(redis.url).port}`;
  authority = await startAuthority({
    redis: redis.url,
    credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
    policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
  });
  upstream = await startUpstream((_req, res) => res.end('ok'));
  const config = writeTemp(
    'sidecar.json',
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      instance: { id },
      authority: { url: authority.url, caFile: writeTemp('ca.pem', authority.caPem), bootstrap: { joinToken: { env: 'JT' } } },
      revocations: { redis: revocations(sidecarRedis) },
      ...extra,
      routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    }),
  );
  const proc = (sidecar = spawnLeash(['sidecar', '--config', config], { JT: await authority.token('agent-1'), ...env }));
  const started = await proc.waitFor((l) => l.msg === 'leash sidecar started');
  return { sidecarRedis, started, sidecar: proc, admin: db };
}

describe('a sidecar with the documented Redis user', () => {
  it.each(FORMS)('applies revocations and writes its audit entries, and cannot write or read the authority\'s keys ($form)', async ({ revocations, env }) => {
    const { sidecarRedis, started, sidecar, admin } = await startWithSidecarUser('sc-acl', revocations, { audit: { flushInterval: '100ms' } }, env);
    const acquired = await sidecar.waitFor((l) => l.event === 'credential.acquired');
    const proxy = `http://127.0.0.1:${String(started.listen).split(':').pop()}`;
    expect((await fetch(`${proxy}/search/v1/x`)).status).toBe(200);
    // Its lifecycle events and usage summaries reach the stream.
    const events = async () => (await admin!.xrange('leash:audit', '-', '+')).filter(([, f]) => f.includes('sc-acl')).map(([, f]) => f[f.indexOf('event') + 1]);
    await waitFor(async () => (await events()).includes('usage'), { timeoutMs: 5_000, intervalMs: 50 });
    expect(await events()).toContain('credential.acquired');
    // A revocation published by the authority's side is applied.
    await new RedisRevocationPublisher(admin, 3_600_000).publish({ scope: 'lease', target: String(acquired.lease), reason: 'test', by: 'test' });
    await sidecar.waitFor((l) => l.event === 'credential.revoked');
    await sidecar.waitFor((l) => l.event === 'credential.acquired' && l.lease !== acquired.lease);
    // Nothing Redis refused along the way.
    expect([...sidecar.lines, sidecar.stderr.join('')].filter((l) => /NOPERM|flush failed|revocation channel not up|can read the authority/.test(l))).toEqual([]);
    // The password is in no log line, in either form, nor in the status page.
    const status = await (await fetch(`http://127.0.0.1:${String(started.admin).split(':').pop()}/status`)).text();
    for (const out of [...sidecar.lines, sidecar.stderr.join(''), status]) expect(out).not.toContain('sidecar-password-not-a-secret');

    // And with that user, none of the authority's keys, nor publishing.
    const as = new Redis(sidecarRedis);
    try {
      const refused = async (p: Promise<unknown>) => expect(p).rejects.toThrow(/NOPERM/);
      await refused(as.set('leash:join:0123', '{"identity":"prod-db-1","expiresAtMs":1}'));
      await refused(as.get('leash:lease:x'));
      await refused(as.del('leash:revoked:instance:spiffe://leash.local/join/agent-1'));
      await refused(as.keys('*'));
      await refused(as.publish('leash:revocations', '{}'));
      await refused(as.xadd('leash:revocations', '*', 'scope', 'all'));
    } finally {
      as.disconnect();
    }
  }, 30_000);

  it('a tenant holding that password cannot forge a reset of the revocation stream (every subscribed sidecar would drop and re-lease everything); a real reset is still noticed', async () => {
    // In deploy/overlays/redis-in-cluster-subscribed every agent namespace holds this
    // password (Secret leash-redis-sidecar) and every pod labelled leash.dev/injected
    // reaches Redis: whoever may create a pod in one of them is this user.
    const { sidecarRedis, sidecar, admin } = await startWithSidecarUser('sc-epoch', (url) => url);
    await sidecar.waitFor((l) => l.event === 'credential.acquired');
    await waitFor(async () => (await admin!.get('{leash:revocations}:epoch')) !== null, { timeoutMs: 5_000, intervalMs: 50 });
    const epoch = await admin.get('{leash:revocations}:epoch');
    const reconciles = () => sidecar!.lines.filter((l) => l.includes('reconciling every lease')).length;
    // Makes the sidecar catch up now (it reads the epoch at every reconnection).
    const sidecarClients = async () => String(await admin!.call('CLIENT', 'LIST')).split('\n').filter((l) => / user=leash-sidecar /.test(l)).length;
    const reconnect = async () => {
      await admin!.call('CLIENT', 'KILL', 'USER', 'leash-sidecar');
      await waitFor(async () => (await sidecarClients()) >= 2, { timeoutMs: 10_000, intervalMs: 50 });
      await new Promise((r) => setTimeout(r, 500));
    };

    const attacker = new Redis(sidecarRedis);
    try {
      // Overwriting the epoch (SET without NX: an ACL cannot allow only NX) is refused ...
      await expect(attacker.set('{leash:revocations}:epoch', 'forged-by-a-tenant')).rejects.toThrow(/NOPERM/);
      await expect(attacker.del('{leash:revocations}:epoch')).rejects.toThrow(/NOPERM/);
      expect(await admin.get('{leash:revocations}:epoch')).toBe(epoch);
      // ... so the sidecar, catching up, sees no reset and keeps its leases.
      await reconnect();
      expect(reconciles()).toBe(0);
    } finally {
      attacker.disconnect();
    }

    // A real reset (Redis lost the stream and its epoch) is still noticed: the epoch is
    // gone, which the sidecar reads as a reset although it may not write a new one.
    await admin.del('{leash:revocations}:epoch', 'leash:revocations');
    await reconnect();
    await waitFor(() => reconciles() >= 1, { timeoutMs: 10_000, intervalMs: 50 });
    expect([...sidecar.lines, sidecar.stderr.join('')].filter((l) => /NOPERM/.test(l))).toEqual([]);
  }, 40_000);

  it('with the authority\'s own user instead, the sidecar warns that its Redis user can read the authority\'s records', async () => {
    redis = await startRedis();
    authority = await startAuthority({
      redis: redis.url,
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    upstream = await startUpstream((_req, res) => res.end('ok'));
    // Another instance holds a lease: the authority's lease index exists in Redis.
    const other = await bootstrap(authority.url, authority.caPem, await authority.token('agent-0'));
    expect((await api(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: other.client, body: { credential: 'search' } })).status).toBe(200);
    const config = writeTemp(
      'sidecar.json',
      JSON.stringify({
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        authority: { url: authority.url, caFile: writeTemp('ca.pem', authority.caPem), bootstrap: { joinToken: { env: 'JT' } } },
        revocations: { redis: redis.url },
        routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      }),
    );
    sidecar = spawnLeash(['sidecar', '--config', config], { JT: await authority.token('agent-1') });
    const warned = await sidecar.waitFor((l) => typeof l.msg === 'string' && l.msg.includes("can read the authority's own records"), 10_000);
    expect(warned.level).toBe('warn');
    expect(sidecar.lines.filter((l) => l.includes("can read the authority's own records"))).toHaveLength(1);
  }, 30_000);
});
