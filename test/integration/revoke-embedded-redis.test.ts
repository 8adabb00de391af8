import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { RedisTarget } from '../../src/bus/connect.js';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { ConfigError } from '../../src/core/errors.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startBusRedis, startSentinel, type BusRedis, type TestSentinel } from '../helpers/bus-redis.js';
import { LogSink, startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { waitFor } from '../helpers/wait.js';

/**
 * An embedder (src/index.ts exports Sidecar) that hands the sidecar a parsed config and
 * no `revocationsRedis`: the sidecar used to cast config.revocations.redis to a connection
 * target, so a Sentinel/Cluster password source (`{ env }`, `{ file }`) went to ioredis as
 * an object, AUTH failed and no revocation ever arrived, silently. Now an env password is
 * taken from the env the sidecar was given, and a file one is a ConfigError up front.
 */
const PASSWORD = 'redis-pw-for-the-embedded-test-0123';

let redis: BusRedis | undefined;
let sentinel: TestSentinel | undefined;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let running: RunningSidecar | undefined;
let client: Redis | undefined;

afterEach(async () => {
  await running?.stop();
  await upstream?.close();
  await authority?.stop();
  client?.disconnect();
  await sentinel?.stop();
  await redis?.stop();
  running = upstream = authority = client = sentinel = redis = undefined;
});

const route = (upstreamUrl: string) => ({
  search: { upstream: upstreamUrl, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
});

const leaseOf = async (s: RunningSidecar) =>
  ((await (await fetch(`${s.adminUrl}/status`)).json()) as { routes: { search: { lease: string | null } } }).routes.search.lease;

describe('an embedder passing config.revocations.redis as the config gives it', () => {
  it('Sentinel with a password from the environment: the channel comes up and a lease revocation is applied', { timeout: 20_000 }, async () => {
    redis = await startBusRedis();
    sentinel = await startSentinel(redis.port);
    // The password is set once the Sentinel knows its master (the helper's readiness probe
    // is an unauthenticated PING), and the Sentinel is told it too.
    client = new Redis(redis.url);
    await client.config('SET', 'requirepass', PASSWORD);
    const sentinelAdmin = new Redis({ host: '127.0.0.1', port: sentinel.port });
    await sentinelAdmin.call('SENTINEL', 'SET', sentinel.name, 'auth-pass', PASSWORD);
    sentinelAdmin.disconnect();
    await client.auth(PASSWORD);

    authority = await startAuthority({
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    upstream = await startUpstream((_req, res) => res.end('ok'));
    const token = await authority.token('agent-1');
    running = await startSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        revocations: { redis: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name, password: { env: 'LEASH_TEST_REDIS_PASSWORD' } } },
        routes: route(upstream.url),
      },
      { authorityCa: authority.caPem, joinToken: () => token, env: { LEASH_TEST_REDIS_PASSWORD: PASSWORD } },
    );
    const metrics = () => fetch(`${running!.adminUrl}/metrics`).then((r) => r.text());
    // Anchored: the metric's HELP text also reads "leash_revocation_channel_up 1 while …".
    expect(await metrics()).toMatch(/^leash_revocation_channel_up 1$/m);

    const before = await leaseOf(running);
    expect(before).not.toBeNull();
    await new RedisRevocationPublisher(client, 3_600_000).publish({ scope: 'lease', target: before!, reason: 'leaked', by: 'test' });
    let now: string | null = before;
    await waitFor(async () => (now = await leaseOf(running!)) !== null && now !== before, { timeoutMs: 3_000, intervalMs: 20, message: () => `a new lease (still ${now})` });
    expect(await metrics()).toMatch(/^leash_revocations_applied_total\{scope="lease"\} 1$/m);
    // The password appears in no log line.
    expect(running.logs.lines.join('\n')).not.toContain(PASSWORD);
  });

  it('a password the sidecar cannot read (a file; an unset variable) is a ConfigError at construction, naming the key', () => {
    const embed = (password: object, env: Record<string, string> = {}, revocationsRedis?: RedisTarget) => {
      const config = parseConfig(
        sidecarSchema,
        JSON.stringify({
          listen: '127.0.0.1:0',
          admin: '127.0.0.1:0',
          revocations: { redis: { cluster: [{ host: '127.0.0.1', port: 7000 }], password } },
          routes: { api: { upstream: 'http://127.0.0.1:1', credential: { env: 'API_KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
        }),
        env,
      );
      const logger = createLogger({ level: 'silent', destination: new LogSink() });
      return () => new Sidecar({ config, env: { API_KEY: 'k', ...env }, caFiles: new Map(), logger, audit: createAudit(logger), revocationsRedis });
    };
    const fromFile = embed({ file: '/run/secrets/redis-password' });
    expect(fromFile).toThrow(ConfigError);
    expect(fromFile).toThrow(/revocations\.redis\.password: \/run\/secrets\/redis-password was not read/);
    expect(embed({ env: 'UNSET_REDIS_PASSWORD' })).toThrow(/revocations\.redis\.password: environment variable UNSET_REDIS_PASSWORD is not set/);
    // Set in the env it is given, or resolved by the caller as the entry point does: accepted
    // (nothing connects before start).
    expect(embed({ env: 'SET_REDIS_PASSWORD' }, { SET_REDIS_PASSWORD: 'x' })).not.toThrow();
    expect(embed({ file: '/run/secrets/redis-password' }, {}, { cluster: [{ host: '127.0.0.1', port: 7000 }], password: 'x' })).not.toThrow();
  });
});
