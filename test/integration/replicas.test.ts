import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { api, bootstrap, fleetSecrets, startReplica, type FleetSecrets, type Replica } from '../helpers/replicas.js';
import { sleep } from '../helpers/wait.js';

/**
 * DESIGN §2: the authority is stateless apart from Redis, so N replicas serve one fleet.
 * Two replicas here share one Redis, one CA and one JWT signing key directory, each on its
 * own HTTPS port; whatever one does, the other sees.
 */
const CONFIG = {
  credentials: {
    search: { kind: 'jwt', audience: 'search-api', scopes: ['search:read'], ttl: '5m' },
    fast: { kind: 'jwt', audience: 'search-api', scopes: ['search:read'], ttl: '2s' },
  },
  policies: [{ identities: ['join:agent-*'], credentials: ['search', 'fast'], maxTtl: '1h' }],
};

let redis: TestRedis;
let secrets: FleetSecrets;
let a: Replica;
let b: Replica;
let upstream: Upstream | undefined;
const sidecars: RunningSidecar[] = [];

beforeAll(async () => {
  redis = await startRedis();
  secrets = fleetSecrets();
});
afterAll(async () => {
  await redis?.stop();
  secrets?.dispose();
});
beforeEach(async () => {
  [a, b] = await Promise.all([startReplica('a', secrets, redis.url, CONFIG), startReplica('b', secrets, redis.url, CONFIG)]);
});
afterEach(async () => {
  for (const s of sidecars.splice(0)) await s.stop();
  await upstream?.close();
  upstream = undefined;
  await Promise.all([a?.stop(), b?.stop()]);
});

const caPem = () => secrets.ca.certPem;
const createToken = async (at: Replica, identity: string): Promise<string> => {
  const r = await api<{ token: string }>(at.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity, ttl: '5m' }, admin: true });
  expect(r.status).toBe(200);
  return r.body.token;
};
const jwksOf = async (at: Replica): Promise<JSONWebKeySet> => {
  const r = await api<JSONWebKeySet>(at.url, caPem(), 'GET', '/.well-known/jwks.json');
  expect(r.status).toBe(200);
  return r.body;
};

/** An upstream that accepts only leash JWTs verified with replica `at`'s published JWKS. */
async function verifyingUpstream(at: Replica): Promise<Upstream> {
  const jwks = createLocalJWKSet(await jwksOf(at));
  return startUpstream(async (req, res) => {
    const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    try {
      const { payload } = await jwtVerify(token, jwks, { audience: 'search-api' });
      res.end(JSON.stringify({ sub: payload.sub }));
    } catch (err) {
      res.writeHead(401).end((err as Error).message);
    }
  });
}

async function sidecarAt(at: Replica, token: string, credential = 'search'): Promise<RunningSidecar> {
  const s = await startSidecar(
    {
      authority: { url: at.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
      routes: {
        search: { upstream: upstream!.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
      },
    },
    { authorityCa: caPem(), joinToken: () => token },
  );
  sidecars.push(s);
  return s;
}

describe('authority replicas on one Redis', () => {
  it('a join token created on A is redeemed through B, and replaying it at A is refused', async () => {
    upstream = await verifyingUpstream(a);
    const token = await createToken(a, 'agent-join');
    const leash = await sidecarAt(b, token);
    expect(leash.sidecar.identity?.identity).toBe('spiffe://leash.local/join/agent-join');
    const res = await fetch(`${leash.url}/search/v1/q`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ sub: 'spiffe://leash.local/join/agent-join' });
    expect(b.logs.events('instance.bootstrapped')).toHaveLength(1);
    expect(a.logs.events('instance.bootstrapped')).toHaveLength(0);

    const replay = await bootstrap(a.url, caPem(), token);
    expect(replay.status).toBe(401);
    expect(await a.running.metrics.registry.metrics()).toMatch(/leash_authority_bootstrap_total\{method="join_token",result="failure"\} 1/);
  });

  it('a lease issued by B is listed by A and released through A by its owner only', async () => {
    const owner = await bootstrap(b.url, caPem(), await createToken(b, 'agent-owner'));
    const other = await bootstrap(a.url, caPem(), await createToken(a, 'agent-other'));
    expect([owner.status, other.status]).toEqual([200, 200]);

    const lease = await api<{ lease: string; fingerprint: string }>(b.url, caPem(), 'POST', '/v1/leases', { body: { credential: 'search' }, identity: owner.client });
    expect(lease.status).toBe(200);
    const listed = await api<{ leases: Array<{ id: string; instance: string; fingerprint: string }> }>(
      a.url,
      caPem(),
      'GET',
      '/v1/admin/leases?instance=' + encodeURIComponent('spiffe://leash.local/join/agent-owner'),
      { admin: true },
    );
    expect(listed.status).toBe(200);
    expect(listed.body.leases.map((l) => [l.id, l.instance, l.fingerprint])).toEqual([
      [lease.body.lease, 'spiffe://leash.local/join/agent-owner', lease.body.fingerprint],
    ]);
    expect(JSON.stringify(listed.body)).not.toContain('"value"');

    // Another identity cannot release it through either replica: "not found", as for any id.
    const foreign = await api(a.url, caPem(), 'DELETE', `/v1/leases/${lease.body.lease}`, { identity: other.client });
    expect(foreign.status).toBe(404);
    expect(await b.running.authority.listLeases({ credential: 'search' })).toHaveLength(1);

    const released = await api(a.url, caPem(), 'DELETE', `/v1/leases/${lease.body.lease}`, { identity: owner.client });
    expect(released.status).toBe(200);
    expect(await b.running.authority.listLeases({ instance: 'spiffe://leash.local/join/agent-owner' })).toEqual([]);
    // A holder's release is routine: lease.released, never lease.revoked (an admin action).
    expect(a.logs.events('lease.released')).toEqual([expect.objectContaining({ lease: lease.body.lease, fingerprint: lease.body.fingerprint })]);
    expect(a.logs.events('lease.revoked')).toEqual([]);
    // Releasing twice (through B this time) is "not found".
    expect((await api(b.url, caPem(), 'DELETE', `/v1/leases/${lease.body.lease}`, { identity: owner.client })).status).toBe(404);
  });

  it('both replicas publish the same JWKS: a token issued by B verifies with A’s JWKS', async () => {
    const [ja, jb] = await Promise.all([jwksOf(a), jwksOf(b)]);
    expect(ja.keys.length).toBeGreaterThan(0);
    expect(ja).toEqual(jb);
    const id = await bootstrap(a.url, caPem(), await createToken(a, 'agent-jwks'));
    const lease = await api<{ value: string }>(b.url, caPem(), 'POST', '/v1/leases', { body: { credential: 'search' }, identity: id.client });
    expect(lease.status).toBe(200);
    const { payload, protectedHeader } = await jwtVerify(lease.body.value, createLocalJWKSet(ja), { audience: 'search-api' });
    expect(payload.sub).toBe('spiffe://leash.local/join/agent-jwks');
    expect(protectedHeader.kid).toBe(ja.keys[0]!.kid);
  });

  it('a sidecar pointed at A keeps serving and rotating while B is stopped', async () => {
    upstream = await verifyingUpstream(a);
    const token = await createToken(b, 'agent-survivor'); // made at B, which then goes away
    await b.stop();
    const leash = await sidecarAt(a, token, 'fast'); // 2 s JWTs: refreshed about every second
    const statuses: number[] = [];
    const until = Date.now() + 2_600;
    while (Date.now() < until) {
      statuses.push((await fetch(`${leash.url}/search/v1/q`)).status);
      await sleep(50);
    }
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(leash.logs.events('credential.rotated').length).toBeGreaterThanOrEqual(1);
    expect(a.logs.events('lease.issued').length).toBeGreaterThanOrEqual(2);
  });

  it('one join token, 10 concurrent bootstraps split over A and B: exactly one identity', async () => {
    const token = await createToken(a, 'agent-race');
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => bootstrap(i % 2 === 0 ? a.url : b.url, caPem(), token)));
    const ok = answers.filter((r) => r.status === 200);
    expect(ok).toHaveLength(1);
    expect(ok[0]!.body.identity).toBe('spiffe://leash.local/join/agent-race');
    expect(answers.filter((r) => r.status === 401)).toHaveLength(9);
    const bootstrapped = a.logs.events('instance.bootstrapped').length + b.logs.events('instance.bootstrapped').length;
    expect(bootstrapped).toBe(1);
  });
});
