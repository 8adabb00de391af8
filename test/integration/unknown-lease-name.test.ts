import { generateKeyPairSync } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { unknownCredential } from '../../src/authority/authority.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit, PER_REQUEST_EVENTS, redisAuditSink } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { createCsr } from '../../src/pki/x509.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { call, errorCode, keyAndCsr } from '../helpers/authority-sec-tls.js';
import { LogSink, startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { sleep } from '../helpers/wait.js';

/**
 * A lease name the authority does not know is never echoed where the agent (/status, the
 * sidecar's logs) or the audit stream can read it: it may be a secret the config detector
 * missed. Known names stay readable. Real authority, real sidecar, real HTTPS/mTLS.
 */
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let leash: RunningSidecar | undefined;
let redis: TestRedis | undefined;
let sidecar: Sidecar | undefined;
let client: Redis | undefined;

afterEach(async () => {
  await leash?.stop();
  await sidecar?.stop();
  await upstream?.close();
  await authority?.stop();
  client?.disconnect();
  await redis?.stop();
  leash = upstream = authority = redis = sidecar = client = undefined;
});

const AUTHORITY_CONFIG = {
  trustDomain: 'leash.local',
  credentials: {
    search: { kind: 'jwt', audience: 'search-api', ttl: '5m' },
    secret: { kind: 'jwt', audience: 'other', ttl: '5m' },
  },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
};
// Passes the config's checks (lower case, no key shape), yet stands for a value that must not spread.
const UNKNOWN = 'zq8-pasted-vendor-value-k3';

describe('an unknown lease name', () => {
  it('is shown on /status and audited by fingerprint only, on both sides; known names stay readable', async () => {
    authority = await startAuthority(AUTHORITY_CONFIG);
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const token = await authority.token('agent-1');
    const route = (credential: string) => ({ upstream: upstream!.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] });
    leash = await startSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        routes: { good: route('search'), typo: route(UNKNOWN), forbidden: route('secret') },
      },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
    // Each provider's first attempt is over when start() resolves; make the agent see the refusal too.
    expect((await fetch(`${leash.url}/typo/x`)).status).toBe(503);

    const statusText = await (await fetch(`${leash.adminUrl}/status`)).text();
    const status = JSON.parse(statusText) as { routes: Record<string, { credential: string; available: boolean }> };
    expect(statusText).not.toContain(UNKNOWN);
    expect(status.routes.typo!.credential).toBe(`lease:${fingerprint(UNKNOWN)}`);
    expect(status.routes.good).toMatchObject({ credential: 'lease:search', available: true });
    // Not granted (yet): the sidecar cannot tell forbidden from unknown, so it shows no name either.
    expect(status.routes.forbidden!.credential).toBe(`lease:${fingerprint('secret')}`);

    const denied = authority.logs.events('policy.denied');
    expect(denied.find((e) => e.credential === unknownCredential(UNKNOWN))).toMatchObject({ reason: 'no such credential' });
    expect(unknownCredential(UNKNOWN)).toBe(`unknown:${fingerprint(UNKNOWN)}`);
    // A known name refused by policy is still named: it is useful and reveals nothing.
    expect(denied.some((e) => e.credential === 'secret')).toBe(true);
    expect(leash.logs.events('credential.acquired')[0]).toMatchObject({ route: 'good', credential: 'lease:search' });
    expect(leash.logs.events('credential.refresh_failed').filter((e) => e.route === 'typo').length).toBeGreaterThanOrEqual(1);
    for (const line of [...leash.logs.lines, ...authority.logs.lines]) expect(line).not.toContain(UNKNOWN);

    // The authority's refusal does not echo the name back to the caller either.
    const identity = leash.sidecar.identity!.identity!;
    await expect(authority.running.authority.lease(identity, { credential: UNKNOWN })).rejects.toThrow(/^identity may not lease the requested credential$/);
    await expect(authority.running.authority.lease(identity, { credential: 'secret' })).rejects.toThrow(/^identity may not lease the requested credential$/);
  });
});

describe('an unknown lease name and the Redis audit stream (leash:audit)', () => {
  it('neither the authority nor the sidecar (wired as leash sidecar wires it) writes the name to the stream', async () => {
    redis = await startRedis();
    authority = await startAuthority({ ...AUTHORITY_CONFIG, redis: redis.url });
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const token = await authority.token('agent-9');
    const config = parseConfig(
      sidecarSchema,
      JSON.stringify({
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        routes: {
          good: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization' }, allow: ['GET /**'] },
          typo: { upstream: upstream.url, credential: UNKNOWN, inject: { header: 'authorization' }, allow: ['GET /**'] },
        },
      }),
      {},
    );
    client = new Redis(redis.url);
    const logs = new LogSink();
    const logger = createLogger({ level: 'debug', destination: logs });
    const audit = createAudit(logger, redisAuditSink(client, 'leash:audit', logger, undefined, PER_REQUEST_EVENTS));
    sidecar = new Sidecar({ config, env: {}, caFiles: new Map(), logger, audit, authorityCa: authority.caPem, joinToken: () => token });
    await sidecar.start();
    // Both sides' events land in the stream: wait for the sidecar's failure and the authority's denial.
    let entries: [string, string[]][] = [];
    const deadline = Date.now() + 5_000;
    const has = (event: string) => entries.some(([, f]) => f[1] === event);
    while (Date.now() < deadline && !(has('credential.refresh_failed') && has('policy.denied') && has('credential.acquired'))) {
      await sleep(25);
      entries = (await client.xrange('leash:audit', '-', '+')) as [string, string[]][];
    }
    expect(has('credential.refresh_failed') && has('policy.denied') && has('credential.acquired')).toBe(true);
    const text = JSON.stringify(entries);
    expect(text).not.toContain(UNKNOWN);
    expect(text).toContain(`lease:${fingerprint(UNKNOWN)}`);
    expect(text).toContain(unknownCredential(UNKNOWN));
    expect(text).toContain('lease:search');
    for (const line of [...logs.lines, ...authority.logs.lines]) expect(line).not.toContain(UNKNOWN);
  });
});

describe('a refused CSR does not use up the join token (docs/authority.md)', () => {
  it('bad CSRs are refused with 400 before the token is redeemed; the same token then bootstraps', async () => {
    authority = await startAuthority(AUTHORITY_CONFIG);
    const token = await authority.token('agent-csr');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    for (const csr of ['-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', createCsr({ privateKeyPem: p384 }, 'x')]) {
      const refused = await call(authority.url, authority.caPem, 'POST', '/v1/bootstrap', { body: { joinToken: token, csr } });
      expect(refused.status).toBe(400);
      expect(errorCode(refused)).toBe('LEASH_ERR_AUTHORITY_BAD_REQUEST');
    }
    const ok = await call(authority.url, authority.caPem, 'POST', '/v1/bootstrap', { body: { joinToken: token, csr: keyAndCsr().csr } });
    expect(ok.status).toBe(200);
    expect((ok.json as { identity: string }).identity).toBe('spiffe://leash.local/join/agent-csr');
    // Used once now: single-use still holds.
    const again = await call(authority.url, authority.caPem, 'POST', '/v1/bootstrap', { body: { joinToken: token, csr: keyAndCsr().csr } });
    expect(again.status).toBe(401);
  });
});
