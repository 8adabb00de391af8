import { X509Certificate } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { DenySet } from '../../src/verify/deny-set.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { api, bootstrap, fleetSecrets, startReplica, type FleetSecrets, type Replica } from '../helpers/replicas.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Two authority replicas on one Redis whose clocks disagree (an NTP-less node, a VM
 * resumed from a snapshot). An instance revoked through one replica must stay refused by
 * every replica for as long as any certificate it holds is valid — whichever replica
 * signed that certificate, by whichever clock. The revocation mark once ended at the
 * *revoking* replica's `now + identity.ttl + 5 min`: with the revoker an hour behind, the
 * mark went with the real time + 5 min (an hour-long certificate outlived it by 55 min),
 * and more than ttl + 5 min behind it was written already expired (PXAT in the past:
 * gone at once) while the revocation was answered 200.
 */
const HOUR = 3_600_000;
const CONFIG = {
  credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
};

let redis: TestRedis;
let client: Redis;
let secrets: FleetSecrets;
const replicas: Replica[] = [];

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  secrets = fleetSecrets();
});
afterEach(async () => {
  for (const r of replicas.splice(0)) await r.stop();
  await client.flushall();
});
afterAll(async () => {
  client?.disconnect();
  secrets?.dispose();
  await redis?.stop();
});

const skewed = (offsetMs: number): Clock => ({ monotonicMs: () => performance.now(), wallMs: () => Date.now() + offsetMs });
const caPem = () => secrets.ca.certPem;

async function replica(name: string, offsetMs: number): Promise<Replica> {
  const r = await startReplica(name, secrets, redis.url, CONFIG, 0, offsetMs === 0 ? {} : { clock: skewed(offsetMs) });
  replicas.push(r);
  return r;
}

// A signer *ahead* of real time cannot be run in one process: OpenSSL checks client
// certificates against the system clock, which refuses its not-yet-valid certificates. The
// fix covers it the same way (the mark lasts past the instance's recorded certificate end).
// signer: the replica that bootstraps the instance (its clock decides the certificate's
// end); revoker: the one `leash revoke --instance` goes to.
const CASES = [
  { name: 'revoker 1 h behind', signer: 0, revoker: -HOUR },
  { name: 'revoker 1 h 10 min behind (mark written already expired)', signer: 0, revoker: -HOUR - 10 * 60_000 },
  { name: 'revoker 3 h behind', signer: 0, revoker: -3 * HOUR },
  { name: 'revoker 30 min behind', signer: 0, revoker: -30 * 60_000 },
  { name: 'revoker 1 h ahead (the mark simply lasts longer)', signer: 0, revoker: HOUR },
];

describe('instance revocation across replicas with skewed clocks', () => {
  it.each(CASES)('$name: the mark outlasts every certificate of the instance, and no replica leases to it', async ({ signer, revoker }) => {
    const s = await replica('signer', signer);
    const r = await replica('revoker', revoker);
    const name = `agent-skew-${Math.abs(signer + revoker) % 1000}-${replicas.length}`;
    const token = await api<{ token: string }>(s.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity: name, ttl: '5m' }, admin: true });
    expect(token.status).toBe(200);
    const id = await bootstrap(s.url, caPem(), token.body.token);
    expect(id.status).toBe(200);
    const identity = `spiffe://leash.local/join/${name}`;
    expect((await api(s.url, caPem(), 'POST', '/v1/leases', { body: { credential: 'search' }, identity: id.client })).status).toBe(200);

    const revoked = await api(r.url, caPem(), 'POST', '/v1/admin/revoke', { body: { scope: 'instance', target: identity, reason: 'skew' }, admin: true });
    expect(revoked.status).toBe(200);

    // Refused now by the replica that signed it (the one whose clock accepts its certificate)…
    const after = await api<{ error?: { message?: string } }>(s.url, caPem(), 'POST', '/v1/leases', { body: { credential: 'search' }, identity: id.client });
    expect(after.status).toBe(401);
    expect(after.body.error?.message).toMatch(/identity revoked/);
    // …and for as long as its certificate is valid: Redis (real time) keeps the mark past its end.
    const notAfterMs = Date.parse(new X509Certificate(id.client.certPem!).validTo);
    const markEnds = Date.now() + (await client.pttl(`leash:revoked:instance:${identity}`));
    expect(await client.exists(`leash:revoked:instance:${identity}`)).toBe(1);
    expect(markEnds).toBeGreaterThan(notAfterMs);
  });
});

/**
 * A credential, `all` or instance revocation takes back what was issued up to its time
 * (`at`): the authority deletes those lease records, and leash/verify denies the JWTs with
 * `iat` ≤ `at`. `at` was the revoking replica's clock: through a replica an hour behind,
 * everything another replica had issued in the last hour counted as issued *after* the
 * revocation — its records stayed listed (`leases: 0`), and a verifier kept accepting its
 * tokens. `at` is now never earlier than Redis' own clock.
 */
describe('credential / all / instance revocation time across replicas with skewed clocks', () => {
  const SCOPES = [
    { scope: 'credential', target: () => 'search' },
    { scope: 'all', target: () => '*' },
    { scope: 'instance', target: (identity: string) => identity },
  ] as const;
  it.each(SCOPES)('$scope revoked through a replica 1 h behind takes back what the other replica issued', async ({ scope, target }) => {
    const onTime = await replica('on-time', 0);
    const behind = await replica('behind', -HOUR);
    const name = `agent-at-${scope}`;
    const token = await api<{ token: string }>(onTime.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity: name, ttl: '5m' }, admin: true });
    const id = await bootstrap(onTime.url, caPem(), token.body.token);
    expect(id.status).toBe(200);
    const identity = `spiffe://leash.local/join/${name}`;
    const lease = await api<{ lease: string; value: string }>(onTime.url, caPem(), 'POST', '/v1/leases', { body: { credential: 'search' }, identity: id.client });
    expect(lease.status).toBe(200);

    const revoked = await api<{ leases: number; revocation: { at: string; id: string } }>(behind.url, caPem(), 'POST', '/v1/admin/revoke', {
      body: { scope, target: target(identity), reason: 'skew' },
      admin: true,
    });
    expect(revoked.status).toBe(200);
    expect(revoked.body.leases).toBe(1);
    expect(await onTime.running.authority.listLeases({ credential: 'search' })).toEqual([]);

    // What a verifier does with the revocation as published: the JWT is denied.
    const claims = JSON.parse(Buffer.from(lease.body.value.split('.')[1]!, 'base64url').toString('utf8')) as { sub: string; jti: string; leash_cred: string; leash_iat_ms: number };
    const deny = new DenySet(HOUR, () => Date.now());
    deny.apply({ ...revoked.body.revocation, scope, target: target(identity), reason: 'skew', by: 'admin' });
    expect(deny.check({ jti: claims.jti, sub: claims.sub, credential: claims.leash_cred, issuedMs: claims.leash_iat_ms })).toMatchObject({ scope });
  });
});

/**
 * The stream is trimmed to the revocation window by `MINID`, compared with its ids — which
 * Redis makes from its own clock. A publisher whose clock was ahead computed the threshold
 * from its clock and trimmed entries the other replicas had just added: a verifier or
 * sidecar starting afterwards (it reads the stream whole) never saw those revocations.
 */
describe('stream trim with a replica whose clock is ahead', () => {
  it('a replica 2 h ahead (window 1 h) keeps the other replicas’ recent revocations', async () => {
    const ahead = await replica('ahead', 2 * HOUR);
    // 1 000 revocations from 10 minutes ago, as the other replicas would have published them.
    const recent = Date.now() - 10 * 60_000;
    for (let i = 0; i < 1000; i++) {
      await client.xadd('leash:revocations', `${recent + i}-0`, 'scope', 'lease', 'target', `lease-${i}`, 'reason', 'recent', 'at', new Date(recent + i).toISOString(), 'by', 'x');
    }
    const answer = await api(ahead.url, caPem(), 'POST', '/v1/admin/revoke', { body: { scope: 'all', target: '*', reason: 'ahead' }, admin: true });
    expect(answer.status).toBe(200);
    const left = (await client.xrange('leash:revocations', '-', '+')) as Array<[string, string[]]>;
    expect(left.filter(([, f]) => f.includes('recent'))).toHaveLength(1000);
  });
});

/**
 * Listing leases (`leash leases`, `leash trace`, a revocation's deletions, every metrics
 * scrape) drops index entries whose expiry has passed — by the listing replica's clock. A
 * replica an hour ahead took every 5-minute lease for expired and removed it from the
 * indexes: no replica listed it any more, and a later `revoke --credential` / `--all` /
 * `--instance` left its record in place (`"leases": 0`).
 */
describe('lease listing with a replica whose clock is ahead', () => {
  it.each(['leases', 'metrics'] as const)('a replica 1 h ahead lists (%s) without dropping the other replica’s live leases', async (how) => {
    const onTime = await replica('on-time', 0);
    const ahead = await replica('ahead', HOUR);
    const token = await api<{ token: string }>(onTime.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity: `agent-list-${how}`, ttl: '5m' }, admin: true });
    const id = await bootstrap(onTime.url, caPem(), token.body.token);
    const lease = await api<{ lease: string }>(onTime.url, caPem(), 'POST', '/v1/leases', { body: { credential: 'search' }, identity: id.client });
    expect(lease.status).toBe(200);

    if (how === 'leases') {
      const listed = await api<{ leases: Array<{ id: string }> }>(ahead.url, caPem(), 'GET', '/v1/admin/leases?credential=search', { admin: true });
      expect(listed.status).toBe(200);
    } else await ahead.running.metrics.registry.metrics();
    await ahead.running.authority.listLeases({});
    await ahead.running.authority.listLeases({ credential: 'search' });

    expect((await onTime.running.authority.listLeases({})).map((l) => l.id)).toEqual([lease.body.lease]);
    const revoked = await api<{ leases: number }>(onTime.url, caPem(), 'POST', '/v1/admin/revoke', { body: { scope: 'credential', target: 'search' }, admin: true });
    expect(revoked.body.leases).toBe(1);
  });
});

/**
 * A replica checks client certificates against its clock: one that was behind accepted a
 * certificate past its end — and so past the revoked instance's mark, which Redis expires
 * by its own clock (the certificate's end + 5 min): a revoked instance leased again there.
 * Certificates are now refused once expired by Redis' clock too (sampled with every epoch
 * check). (OpenSSL checks the handshake against the system clock, so a replica whose
 * *system* clock is behind cannot be run in one process: the check is made on the
 * authority's own verification, which the HTTPS server calls for every connection.)
 */
describe('certificates on a replica whose clock is behind', () => {
  it.each([10 * 60_000, 2 * HOUR])('behind by %d ms: a certificate past its end by Redis’ clock is refused', async (behindMs) => {
    const behind = await replica('behind', -behindMs);
    const onTime = await replica('on-time', 0);
    // Made on time (a token made by the behind replica is stored already expired: see the report).
    const token = await api<{ token: string }>(onTime.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity: `agent-behind-${behindMs}`, ttl: '5m' }, admin: true });
    // Signed by the behind replica: valid by its clock, its end already past by Redis'.
    const key = createIdentityKey();
    const cert = await behind.running.authority.bootstrap({ joinToken: token.body.token, csr: createCsr(key, 'x') });
    const notAfter = new X509Certificate(cert.certificate);
    const endsMs = Date.parse(notAfter.validTo);
    // identity.ttl is 1 h: only the 2 h case has a certificate past its end by the real clock.
    const expired = endsMs <= Date.now();
    const deadline = Date.now() + 7_000; // the first sample is taken at connection
    let refused: unknown;
    do {
      try {
        behind.running.authority.verifyPeer(notAfter);
        refused = undefined;
      } catch (err) {
        refused = err;
      }
      if (!expired || refused) break;
      await new Promise((r) => setTimeout(r, 100));
    } while (Date.now() < deadline);
    if (expired) expect(String((refused as Error)?.message)).toMatch(/expired .* by the store's clock/);
    else expect(refused).toBeUndefined();
    expect(behind.logs.lines.some((l) => l.includes("this replica's clock and Redis' disagree"))).toBe(true);
  });
});

/**
 * A join token expires in Redis at its end (PXAT), computed from the creating replica's
 * clock: one more than the token's TTL behind stored it already expired — `leash token
 * create` printed a token that no replica would ever take. Its end is now counted from the
 * later of the replica's clock and Redis'.
 */
describe('join tokens made on a replica whose clock is behind', () => {
  it.each([20 * 60_000, 2 * HOUR])('behind by %d ms: a 10-minute token is redeemed on the other replica', async (behindMs) => {
    const behind = await replica('behind', -behindMs);
    const onTime = await replica('on-time', 0);
    const made = await api<{ token: string; expiresAt: string }>(behind.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity: `agent-jt-${behindMs}`, ttl: '10m' }, admin: true });
    expect(made.status).toBe(200);
    // The first clock sample is taken at connection: the token may have been made before it.
    const deadline = Date.now() + 7_000;
    let token = made.body.token;
    while (Date.parse(made.body.expiresAt) <= Date.now() && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      const again = await api<{ token: string; expiresAt: string }>(behind.url, caPem(), 'POST', '/v1/admin/tokens', { body: { identity: `agent-jt-${behindMs}`, ttl: '10m' }, admin: true });
      made.body = again.body;
      token = again.body.token;
    }
    expect(Date.parse(made.body.expiresAt)).toBeGreaterThan(Date.now() + 9 * 60_000);
    const booted = await bootstrap(onTime.url, caPem(), token);
    expect(booted.status).toBe(200);
  });
});

/**
 * The signal: each replica exports Redis' clock minus its own
 * (`leash_authority_store_clock_offset_seconds`, sampled with every epoch check), so the
 * LeashAuthorityClockSkew alert sees a replica — or a Redis — whose clock is off.
 */
describe('the clock offset each replica reports', () => {
  it('Redis minus the replica: +2 h for a replica 2 h behind, about 0 on time, −10 min for one 10 min ahead', async () => {
    const cases = [
      { r: await replica('behind-2h', -2 * HOUR), expected: 7_200 },
      { r: await replica('on-time', 0), expected: 0 },
      { r: await replica('ahead-10m', 10 * 60_000), expected: -600 },
    ];
    const offsetOf = async (r: Replica) => {
      const text = await r.running.metrics.registry.metrics();
      const line = text.split('\n').find((l) => l.startsWith('leash_authority_store_clock_offset_seconds '));
      return line === undefined ? undefined : Number(line.split(' ')[1]);
    };
    for (const { r, expected } of cases) {
      // Wrapped: an offset of exactly 0 is a value, not "not yet".
      const { seen } = await waitFor(async () => {
        const v = await offsetOf(r);
        return v === undefined ? undefined : { seen: v };
      }, { timeoutMs: 12_000, intervalMs: 100, message: () => `${r.name}: no offset sampled` });
      expect(Math.abs(seen - expected), `${r.name}: ${seen}`).toBeLessThan(2);
    }
  });
});
