import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runLeash, spawnLeash, type Spawned } from '../helpers/spawn.js';

/**
 * `leash check` (and `leash sidecar` at start) as processes, on files in a tmp dir: inline
 * secrets refused without a trace in stdout/stderr, unknown lease names in a dev config,
 * group-readable credential files and an admin listener off loopback warned about, URL
 * queries never echoed.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-hygiene-'));
const file = (name: string, text: string, mode = 0o600) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};
const run = runLeash;
const pieces = (secret: string) => Array.from({ length: secret.length - 7 }, (_, i) => secret.slice(i, i + 8));
const expectNoPieceOf = (secret: string, text: string) => {
  for (const p of pieces(secret)) expect(text, `contains "${p}"`).not.toContain(p);
};

const VENDOR_KEY = '4f9d2c7e81b36a05d9e4c1f7a2b8e6d3';
const sidecarYaml = (credential: string, extra = '') =>
  `${extra}authority:
  url: https://authority.example:8443
  caFile: ${file('ca.pem', 'unused')}
  bootstrap: { joinToken: { env: JT } }
routes:
  vendor:
    upstream: https://api.vendor.example
    credential: ${credential}
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
`;

describe('leash check', () => {
  it('an inline secret as a lease name (via ${VENDOR_KEY}): exit 1, the key path named, the secret nowhere', () => {
    const r = run(['check', '--config', file('inline.yaml', sidecarYaml('"${VENDOR_KEY}"'))], { VENDOR_KEY });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').slice(1)).toEqual(['  routes.vendor.credential: looks like a secret written inline; secrets are never inline: use { env } or { file }', '']);
    expectNoPieceOf(VENDOR_KEY, r.stdout + r.stderr);
  });

  it('the same with real-looking vendor keys written straight into the file', () => {
    for (const key of ['sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u', 'ghp_R8sT2vX5bN9mQ1wE4yU7iO0pA3sD6fG9hJ2k', 'AKIAQ2WERT5YUIOP7ASD']) {
      const r = run(['check', '--config', file('inline2.yaml', sidecarYaml(key))]);
      expect(r.status, key).toBe(1);
      expect(r.stderr).toMatch(/routes\.vendor\.credential: .*secrets are never inline/);
      expectNoPieceOf(key, r.stdout + r.stderr);
    }
  });

  /** A dev file whose one authority credential reads `source` (printed by check as the source's name). */
  const ghDev = (source: string) => `authority:
  credentials:
    gh: { kind: static, source: ${source} }
  policies: [{ identities: ["join:*"], credentials: ["*"] }]
sidecar:
  routes:
    gh:
      upstream: https://api.github.com
      credential: gh
      inject: { header: authorization, format: "Bearer {{credential}}" }
      allow: ["GET /**"]
`;

  it('a secret expanded into a variable name or a file path ({ env: "${GITHUB_TOKEN}" }): exit 1, the secret nowhere', () => {
    const GITHUB_TOKEN = 'ghp_R8kq2ZxW9mVt4LpY7nB3cJ6hD1sF5gA0eQ2u';
    for (const source of ['{ env: "${GITHUB_TOKEN}" }', '{ file: "/run/secrets/${GITHUB_TOKEN}" }']) {
      const r = run(['check', '--config', file('env-name.yaml', ghDev(source))], { GITHUB_TOKEN });
      expect(r.status, `${source}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/authority\.credentials\.gh\.source/);
      expectNoPieceOf(GITHUB_TOKEN, r.stdout + r.stderr);
    }
    // Ordinary names and paths still pass (a UUID or hex directory included).
    for (const source of ['{ env: GITHUB_TOKEN }', '{ env: AWS_SECRET_ACCESS_KEY }', '{ file: /var/lib/kubelet/pods/0f5e0c3a-1111-4a2b-9c3d-7e8f9a0b1c2d/token }']) {
      const r = run(['check', '--config', file('env-name-ok.yaml', ghDev(source))], { GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY: 'x'.repeat(20) });
      expect(r.stderr, source).not.toMatch(/written inline/);
    }
  });

  it('a secret expanded into an upstream path or an allow rule: exit 1, the secret nowhere; ids in paths still pass', () => {
    // Made up, vendor-shaped (as the inline-key test above): never a real key.
    const BOT_TOKEN = 'sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u';
    const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl';
    const route = (upstream: string, allow: string) => `routes:
  vendor:
    upstream: ${upstream}
    credential: { env: KEY }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["${allow}"]
`;
    for (const [upstream, allow, where] of [
      ['https://api.vendor.example/t/${JWT}/', 'GET /**', 'routes.vendor.upstream'],
      ['https://api.vendor.example/${BOT_TOKEN}', 'GET /**', 'routes.vendor.upstream'],
      ['https://api.vendor.example', 'GET /v1/${BOT_TOKEN}/**', 'routes.vendor.allow[0]'],
    ] as const) {
      const r = run(['check', '--config', file('path-secret.yaml', route(upstream, allow))], { BOT_TOKEN, JWT, KEY: 'x' });
      expect(r.status, `${upstream} ${allow}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.stderr).toContain(`${where}: its path looks like a secret written inline`);
      expectNoPieceOf(BOT_TOKEN, r.stdout + r.stderr);
      expectNoPieceOf(JWT, r.stdout + r.stderr);
    }
    // UUIDs, versions and words in paths pass.
    const ok = run(['check', '--config', file('path-ok.yaml', route('https://api.vendor.example/projects/0f5e0c3a-1111-4a2b-9c3d-7e8f9a0b1c2d/v1', 'GET /v1/models/gpt-4o-2024-08-06'))], { KEY: 'x' });
    expect(ok.status, ok.stderr).toBe(0);
  });

  it('a secret expanded into inject.format, a Basic username or instance.id: exit 1, the key path named, the secret nowhere', () => {
    // Made up, vendor-shaped (as above): never real keys.
    const STRIPE_KEY = 'sk_live_51HqLyjWDarjtT1zdp7dcXcaR0aFz';
    const KEY = 'sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u';
    const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJl';
    const route = (inject: string, instance = '') => `${instance}routes:
  vendor:
    upstream: https://api.vendor.example
    credential: { env: CRED }
    inject: ${inject}
    allow: ["GET /**"]
`;
    const cases = [
      [route('{ basic: { username: "${STRIPE_KEY}" } }'), 'routes.vendor.inject.basic.username'],
      [route('{ header: authorization, format: "Token ${KEY} {{credential}}" }'), 'routes.vendor.inject.format'],
      [route('{ header: x-auth, format: "{{credential}};session=${JWT}" }'), 'routes.vendor.inject.format'],
      [route('{ header: x-auth, format: "Bearer ${JWT}/{{credential}}" }'), 'routes.vendor.inject.format'],
      [route('{ header: authorization, format: "Bearer {{credential}}" }', 'instance: { id: "${KEY}" }\n'), 'instance.id'],
      [route('{ header: authorization, format: "Bearer {{credential}}" }', 'instance: { id: "${JWT}" }\n'), 'instance.id'],
    ] as const;
    for (const [yaml, where] of cases) {
      const r = run(['check', '--config', file('printed-secret.yaml', yaml)], { STRIPE_KEY, KEY, JWT, CRED: 'x' });
      expect(r.status, `${where}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.stderr).toContain(`${where}: looks like a secret written inline`);
      for (const secret of [STRIPE_KEY, KEY, JWT]) expectNoPieceOf(secret, r.stdout + r.stderr);
    }
    // What these hold in real configs passes: words, pod names, UUIDs, random-looking usernames.
    for (const yaml of [
      route('{ basic: { username: api } }', 'instance: { id: agent-7f9c8d6b5-x2k9q }\n'),
      route('{ basic: { username: AC9f3e2d1c0b4a5968776655443322110f } }', 'instance: { id: 0f5e0c3a-1111-4a2b-9c3d-7e8f9a0b1c2d }\n'),
      route('{ header: authorization, format: "Token token={{credential}}, scheme=v2" }'),
      route('{ header: x-api-key, format: "Bearer {{credential}}" }'),
    ]) {
      const r = run(['check', '--config', file('printed-ok.yaml', yaml)], { CRED: 'x' });
      expect(r.status, `${yaml}\n${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  it('a YAML alias that names no anchor, or aliases that expand too far: a config error naming the kind, not the alias', () => {
    const alias = 'Zq9xK2mW7pR4tY8vB3nL6hJ1';
    const r = run(['check', '--config', file('alias.yaml', sidecarYaml(`*${alias}`))]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('an alias (*name) names no anchor (&name) set before it');
    expect(r.stderr).not.toContain('unexpected error');
    expectNoPieceOf(alias, r.stdout + r.stderr);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`)].join('\n');
    const b = run(['check', '--config', file('bomb.yaml', `${bomb}\n`)]);
    expect(b.status).toBe(1);
    expect(b.stderr).toContain('its aliases expand too far');
    expect(b.stderr).not.toContain('unexpected error');
  });

  const devYaml = (lease: string) => `authority:
  credentials:
    openai-prod: { kind: static, source: { env: OPENAI_KEY } }
    anthropic: { kind: jwt, audience: x }
  policies: [{ identities: ["join:*"], credentials: ["*"] }]
sidecar:
  routes:
    openai:
      upstream: https://api.openai.com
      credential: ${lease}
      inject: { header: authorization, format: "Bearer {{credential}}" }
      allow: ["GET /**"]
`;

  it('a dev config whose sidecar leases a name the authority does not define: exit 1 with a did-you-mean', () => {
    const r = run(['check', '--config', file('dev-typo.yaml', devYaml('openai-prdo'))]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').slice(1)).toEqual([
      '  sidecar.routes.openai.credential: names no credential the authority section defines (openai-prod, anthropic); did you mean "openai-prod"?',
      '',
    ]);
    const ok = run(['check', '--config', file('dev-ok.yaml', devYaml('openai-prod'))]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('lease "openai-prod" from the in-process authority');
  });

  it('a group-readable credential file is warned about (with its mode); a 0600 one is not', () => {
    const cred = file('vendor.key', 'sk-file-value-not-printed-0123456789', 0o640);
    const r = run(['check', '--config', file('grp.yaml', sidecarYaml(`{ file: ${cred} }`))]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`warning: routes.vendor.credential: file ${cred} is readable or writable by group/others (mode 0640); chmod 600 it`);
    expect(r.stdout + r.stderr).not.toContain('sk-file-value');
    chmodSync(cred, 0o600);
    const quiet = run(['check', '--config', file('grp.yaml', sidecarYaml(`{ file: ${cred} }`))]);
    expect(quiet.status).toBe(0);
    expect(quiet.stdout).not.toContain('group/others');
  });

  it('admin on 0.0.0.0 is warned about; on 127.0.0.1 it is not', () => {
    const r = run(['check', '--config', file('admin.yaml', sidecarYaml('search', 'admin: 0.0.0.0:9090\n'))]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('warning: admin 0.0.0.0:9090: the admin listener (/status, /metrics) is reachable beyond this host');
    const quiet = run(['check', '--config', file('admin-lo.yaml', sidecarYaml('search', 'admin: 127.0.0.1:9090\n'))]);
    expect(quiet.stdout).not.toContain('warning: admin');
  });

  it('a rule naming a batch or GraphQL endpoint is warned about; wildcards and reads are not', () => {
    const yaml = sidecarYaml('search').replace('allow: ["GET /**"]', 'allow: ["GET /**", "POST /v1.0/**", "GET /graphql", "POST /v1.0/$batch", "* /Graphql.json"]');
    const r = run(['check', '--config', file('tunnels.yaml', yaml)]);
    expect(r.status, r.stderr).toBe(0);
    const warned = r.stdout.split('\n').filter((l) => l.includes('carries requests of its own'));
    expect(warned).toEqual([
      'warning: routes.vendor.allow[3] "POST /v1.0/$batch": "$batch" carries requests of its own, which leash does not check: this rule allows every method and path they name',
      'warning: routes.vendor.allow[4] "* /Graphql.json": "graphql" carries requests of its own, which leash does not check: this rule allows every method and path they name',
    ]);
  });

  it('a URL with ?key= in an error is not echoed (upstream, authority URL, Redis URL)', () => {
    const key = 'Qm7Rb2Xc9Vz4Lk1Hn8Ts';
    const upstream = sidecarYaml('search').replace('https://api.vendor.example', `https://api.vendor.example/v1?key=${key}`);
    const authority = sidecarYaml('search').replace('https://authority.example:8443', `https://authority.example:8443/?token=${key}`);
    const redis = sidecarYaml('search', `revocations: { redis: "http://:${key}@redis.example:6379/?password=${key}" }\n`);
    for (const [name, text, where] of [
      ['q-upstream.yaml', upstream, 'routes.vendor.upstream: must not have a query or fragment'],
      ['q-authority.yaml', authority, 'authority.url: must not have a query or fragment'],
      ['q-redis.yaml', redis, 'revocations.redis: '],
    ] as const) {
      const r = run(['check', '--config', file(name, text)]);
      expect(r.status, name).toBe(1);
      expect(r.stderr, name).toContain(where);
      expectNoPieceOf(key, r.stdout + r.stderr);
    }
  });

  it('a mistyped URL with ?key= (the one an error repeats) is not echoed with its query either', () => {
    // A key the secret-shape detector does not recognise (a recognised one is hidden anyway).
    const key = 'a1b2c3d4e5f6a7b8';
    // Each fails to parse as an http(s) URL, so the error says "got …": never with the key.
    const typos = [`https:api.vendor.example/v1?key=${key}`, `http//api.vendor.example/v1?key=${key}`, `api.vendor.example/v1?key=${key}`, `https://api.ven dor.example/v1?key=${key}`, `https://api.vendor.example/v1 ?key=${key}`, `https://api.vendor.example/v1#key=${key}`];
    typos.forEach((url, i) => {
      const r = run(['check', '--config', file(`q-typo-${i}.yaml`, sidecarYaml('search').replace('https://api.vendor.example', url))]);
      expect(r.status, url).toBe(1);
      expect(r.stderr, url).toContain('routes.vendor.upstream: ');
      expectNoPieceOf(key, r.stdout + r.stderr);
    });
    const authority = run(['check', '--config', file('q-typo-authority.yaml', sidecarYaml('search').replace('https://authority.example:8443', `https:authority.example:8443/?token=${key}`))]);
    expect(authority.stderr).toContain('authority.url: ');
    expectNoPieceOf(key, authority.stdout + authority.stderr);
  });

  it('admin commands: a bad --authority URL is not echoed with its query or user:password', () => {
    const key = 'Qm7Rb2Xc9Vz4Lk1Hn8Ts';
    const r = run(['leases', '--authority', `https://admin:${key}@bad host/?key=${key}`, '--ca', file('admin-ca.pem', 'unused')], { LEASH_ADMIN_TOKEN: 'x' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('leash: --authority: not a URL (got "https://…@bad host/?…")\n');
  });

  it('a valid Redis URL with a password is printed without it', () => {
    const key = 'Qm7Rb2Xc9Vz4Lk1Hn8Ts';
    const r = run(['check', '--config', file('redis-ok.yaml', sidecarYaml('search', `revocations: { redis: "redis://:${key}@redis.example:6379/0" }\n`))]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('revocations from Redis redis://…@redis.example:6379/0');
    expectNoPieceOf(key, r.stdout + r.stderr);
  });
});

describe('leash sidecar at start', () => {
  let proc: Spawned | undefined;
  afterEach(async () => {
    proc?.child.kill('SIGTERM');
    await proc?.exit;
    proc = undefined;
  });

  it('logs the same warnings: a group-readable credential file', async () => {
    const cred = file('start.key', 'sk-start-value-not-printed-0123456789', 0o644);
    const config = file(
      'start.yaml',
      `listen: 127.0.0.1:0
admin: 127.0.0.1:0
routes:
  vendor:
    upstream: https://api.vendor.example
    credential: { file: ${cred} }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
`,
    );
    proc = spawnLeash(['sidecar', '--config', config]);
    const warning = await proc.waitFor((l) => l.msg === 'configuration warning', 10_000);
    expect(warning.warning).toBe(`routes.vendor.credential: file ${cred} is readable or writable by group/others (mode 0644); chmod 600 it`);
    await proc.waitFor((l) => l.msg === 'leash sidecar started', 10_000);
    expect(proc.lines.join('\n')).not.toContain('sk-start-value');
  });
});
