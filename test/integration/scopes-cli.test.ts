import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { spawnLeash, writeTemp } from '../helpers/spawn.js';

/**
 * `leash scopes` as a process against a real redis-server whose audit stream is seeded
 * with `usage` summaries (XADD, as the sidecars write them: docs/audit.md).
 */
let redis: TestRedis;
let client: Redis;

const usage = (over: Record<string, string>): string[] => {
  const e: Record<string, string> = {
    v: '1',
    event: 'usage',
    at: new Date().toISOString(),
    instance: 'agent-1',
    route: 'openai',
    credential: 'openai-key',
    lease: 'l-1',
    fingerprint: 'sha256:0123456789ab',
    method: 'GET',
    path: '/v1/models/gpt-4',
    status: '2xx',
    count: '1',
    first: new Date().toISOString(),
    last: new Date().toISOString(),
    ...over,
  };
  return Object.entries(e).flat();
};

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  // An entry older than --since: left out.
  await client.xadd('leash:audit', `${Date.now() - 10 * 86_400_000}-0`, ...usage({ method: 'POST', path: '/v1/chat/completions', count: '50' }));
  await client.xadd('leash:audit', '*', ...usage({ count: '3' }));
  await client.xadd('leash:audit', '*', ...usage({ path: '/v1/models/gpt-4o', count: '2' }));
  await client.xadd('leash:audit', '*', ...usage({ method: 'DELETE', path: '/v1/files/x', denied: 'leash_denied', status: '4xx', count: '4' }));
  await client.xadd('leash:audit', '*', 'v', '1', 'event', 'credential.acquired', 'instance', 'agent-1', 'route', 'openai', 'credential', 'openai-key');
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

async function run(args: string[], env: Record<string, string> = {}) {
  const p = spawnLeash(['scopes', ...args], env);
  const code = await p.exit;
  return { code, stdout: p.lines.join('\n'), stderr: p.stderr.join('') };
}

const sidecarYaml = (redisUrl: string) => `
revocations:
  redis: ${redisUrl}
routes:
  openai:
    upstream: https://api.openai.com
    credential: { env: OPENAI_KEY }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow:
      - GET /v1/**
      - POST /v1/chat/completions
  github:
    upstream: https://api.github.com
    credential: { env: GITHUB_TOKEN }
    inject: { header: authorization }
    allow: [GET /repos/**]
`;

describe('leash scopes (process, real Redis)', () => {
  it('--json with --config: the narrowest allow list, rules never matched, unused credentials', async () => {
    // The stream labels env sources as the sidecar does; this config's openai uses env:OPENAI_KEY.
    await client.xadd('leash:audit', '*', ...usage({ credential: 'env:OPENAI_KEY', lease: '', path: '/v1/models/o3', count: '1' }));
    const config = writeTemp('sidecar.yaml', sidecarYaml(redis.url));
    const r = await run(['--config', config, '--json', '--since', '7d']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as {
      routes: Array<{ route: string; credential: string; requests: number; narrowest: string[]; rulesNeverMatched: string[] }>;
      unused: unknown[];
      skipped: { denied: number };
    };
    const byKey = Object.fromEntries(report.routes.map((x) => [`${x.route} ${x.credential}`, x]));
    expect(byKey['openai openai-key']).toMatchObject({ requests: 5, narrowest: ['GET /v1/models/*'], rulesNeverMatched: ['POST /v1/chat/completions'] });
    expect(byKey['openai env:OPENAI_KEY']).toMatchObject({ requests: 1, narrowest: ['GET /v1/models/o3'] });
    expect(byKey['github env:GITHUB_TOKEN']).toMatchObject({ requests: 0, rulesNeverMatched: ['GET /repos/**'] });
    expect(report.unused).toEqual([{ route: 'github', credential: 'env:GITHUB_TOKEN' }]);
    expect(report.skipped.denied).toBe(4);
  });

  it('a table with --redis; exit 1 and an ANOMALY line when one lease is in use on two instances', async () => {
    let r = await run(['--redis', redis.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('route openai  credential openai-key  5 requests (since 7d)');
    expect(r.stdout).toContain('- "GET /v1/models/*"');
    await client.xadd('leash:audit', '*', ...usage({ instance: 'agent-2' }));
    r = await run(['--redis', redis.url]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('ANOMALY cloned credential: lease l-1 (openai-key, sha256:0123456789ab) used by 2 instances: agent-1, agent-2');
    const j = JSON.parse((await run(['--json'], { LEASH_REDIS_URL: redis.url })).stdout) as { cloned: Array<{ event: string; instances: string[] }> };
    expect(j.cloned).toEqual([expect.objectContaining({ event: 'anomaly.cloned_credential', instances: ['agent-1', 'agent-2'] })]);
  });

  it('usage errors and an unreachable Redis fail with exit 1 and one line', async () => {
    let r = await run([]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('needs the Redis holding the audit stream');
    r = await run(['--redis', redis.url, '--since', 'forever']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--since: must be a duration');
    r = await run(['--redis', 'redis://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^leash: cannot read the audit stream leash:audit: /);
  });

  it('nothing from the stream reaches the terminal as a control character: an agent\'s encoded ESC cannot hide the ANOMALY line', async () => {
    // As the sidecar stores what an agent asked for (percent-encoded), and as anyone with XADD could write.
    await client.xadd('leash:audit', '*', ...usage({ route: 'evil', lease: 'l-9', path: '/v1/%1B%5B8m/%1B%5D0;PWNED%07' }));
    await client.xadd('leash:audit', '*', ...usage({ route: 'evil', lease: 'l-9', instance: 'agent-\x1b[2J\x1b[H', path: '/v1/%C2%9B8m' }));
    const r = await run(['--redis', redis.url]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/ANOMALY cloned credential: lease l-9 /);
    expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  });
});
