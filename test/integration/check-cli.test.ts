import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLeash } from '../helpers/spawn.js';

/**
 * `leash check FILE` as a process on files in a tmp dir: every problem in one run with key
 * paths, exit 1 and nothing called valid when there is any; a misspelt key named with the
 * closest one and not changing the file's kind; the examples valid as their kind; warnings
 * worded the same for sidecar, authority and dev files.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-check-'));
const file = (name: string, text: string, mode = 0o600) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};
const check = (path: string, env: Record<string, string> = {}) => {
  const r = runLeash(['check', '--config', path], env);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, all: r.stdout + r.stderr };
};
const example = (name: string) => readFileSync(join(process.cwd(), 'examples', name), 'utf8');

const FOUR_PROBLEMS = `trustDomain: leash.local
credentials:
  openai: { kind: statik, source: { env: OPENAI_KEY } }
  search: { kind: jwt, audience: search-api, ttl: 15 }
policies:
  - identities: ["join:doc-*"]
    credentials: [openai, serach]
  - identities: ["doc-agent-*"]
    credentials: [search]
`;

describe('leash check reports every problem in one run', () => {
  it('an authority file with four problems: all four with key paths, exit 1, nothing "valid"', () => {
    const path = file('four.yaml', FOUR_PROBLEMS);
    const r = check(path);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.all).not.toMatch(/valid/i);
    expect(r.stderr.split('\n')).toEqual([
      `leash: ${path}: 4 problems, read as an authority file by its top-level keys trustDomain, credentials and policies:`,
      '  credentials.openai.kind: must have kind static, jwt, oauth2 or exec',
      '  credentials.search.ttl: must be a TTL like "90s", "15m" or "1h"',
      '  policies[0].credentials[1]: names no credential defined under credentials (got "serach"); did you mean "search"?',
      '  policies[1].identities[0]: must start with "spiffe://" or "join:" (got "doc-agent-*")',
      '',
    ]);
  });

  it('misspelt `credentails:`: did you mean "credentials", still read as an authority file', () => {
    const r = check(file('typo.yaml', FOUR_PROBLEMS.replace('credentials:\n', 'credentails:\n')));
    expect(r.status).toBe(1);
    expect(r.all).not.toMatch(/valid/i);
    expect(r.stderr).toContain('read as an authority file by its top-level keys trustDomain, credentails (≈ credentials) and policies:');
    expect(r.stderr).toContain('\n  credentails: unknown key; did you mean "credentials"?\n');
    expect(r.stderr).not.toMatch(/routes|sidecar/);
    // The problems behind the typo are found in the same run.
    expect(r.stderr).toContain('\n  credentails.search.ttl: must be a TTL like');
    expect(r.stderr).toContain('\n  policies[1].identities[0]: must start with');
  });

  it('`sidecars:` in a dev file: unknown key with a suggestion, and no authority.url noise', () => {
    const r = check(file('dev-typo.yaml', example('dev.yaml').replace(/^sidecar:/m, 'sidecars:')));
    expect(r.status).toBe(1);
    expect(r.all).not.toMatch(/valid/i);
    expect(r.stderr).toContain('read as a leash dev file');
    expect(r.stderr).toContain('\n  sidecars: unknown key; did you mean "sidecar"?\n');
    expect(r.all).not.toContain('authority.url');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(2);
  });

  it('an empty file: called empty, not "not readable as YAML"', () => {
    const path = file('empty.yaml', '');
    const r = check(path);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`leash: ${path}: 1 problem, not readable as a config:\n  ${path}: is empty; a config is a mapping of keys to values\n`);
  });

  it('an unknown key with no close one: the keys known there, no guess, and its value not checked as a guessed key', () => {
    const r = check(file('foo.yaml', `foo: 1\nroutes:\n  a: { upstream: "https://a.example", credential: { env: A }, inject: { header: x }, allow: ["GET /"] }\n`));
    expect(r.status).toBe(1);
    expect(r.all).not.toMatch(/valid|did you mean/i);
    expect(r.stderr.trimEnd().split('\n').slice(1)).toEqual([expect.stringMatching(/^ {2}foo: unknown key \(known keys here: instance, listen, admin, .*routes\)$/)]);
  });

  it('no raw validator wording: wrong types all over a sidecar file', () => {
    const r = check(
      file(
        'types.yaml',
        `listen: 8080
admin: [1]
instance: { id: 5 }
log: { level: loud }
rotation: { at: "half", jitter: -1 }
routes:
  a:
    upstream: 12
    credential: []
    inject: { header: 7 }
    allow: "GET /"
    maxSockets: 1.5
    websocket: "yes"
    stripHeaders: {}
`,
      ),
    );
    expect(r.status).toBe(1);
    const lines = r.stderr.trimEnd().split('\n').slice(1);
    expect(lines.length).toBeGreaterThanOrEqual(12);
    for (const line of lines) {
      expect(line).toMatch(/^ {2}[^\s:]+: \S/);
      expect(line).not.toMatch(/\bexpected\b|\breceived\b|Invalid input|Invalid option|Too small|Too big/i);
    }
    expect(r.all).not.toMatch(/valid/i);
  });

  it.each([
    ['sidecar.yaml', 'sidecar'],
    ['authority.yaml', 'authority'],
    ['dev.yaml', 'dev'],
  ])('the example %s: "valid (%s)", exit 0', (name, kind) => {
    const r = check(join(process.cwd(), 'examples', name));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')[0]).toBe(`config ${join(process.cwd(), 'examples', name)}: valid (${kind})`);
  });

  it('says what an authority rate-limits, or that it does not', () => {
    const base = 'credentials:\n  search: { kind: jwt, audience: search-api }\npolicies:\n  - { identities: ["join:a-*"], credentials: [search] }\n';
    expect(check(file('limits-default.yaml', base)).stdout).toContain('  lease requests per identity: 30 at once, then 60 a minute (per replica)\n');
    expect(check(file('limits-set.yaml', `${base}limits: { leases: { perMinute: 6, burst: 2 } }\n`)).stdout).toContain('  lease requests per identity: 2 at once, then 6 a minute (per replica)\n');
    expect(check(file('limits-off.yaml', `${base}limits: { leases: { perMinute: 0 } }\n`)).stdout).toContain('  lease requests per identity: no limit (limits.leases.perMinute 0)\n');
    expect(check(file('limits-boot.yaml', `${base}limits: { bootstraps: { perMinute: 0 } }\n`)).stdout).toContain('  bootstrap requests per client address: no limit (limits.bootstraps.perMinute 0)\n');
    expect(check(file('limits-default2.yaml', base)).stdout).toContain('  bootstrap requests per client address: 30 at once, then 60 a minute (per replica)\n');
    const bad = check(file('limits-bad.yaml', `${base}limits: { leases: { perMinute: -1, burst: 0 } }\n`));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('limits.leases.perMinute');
    expect(bad.stderr).toContain('limits.leases.burst');
  });
});

describe('warnings are worded the same for every kind of file', () => {
  const cred = file('vendor.key', 'sk-file-value-not-printed-0123456789', 0o640);
  const sidecar = `routes:
  vendor:
    upstream: https://api.vendor.example
    credential: { env: VENDOR_KEY }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
  filed:
    upstream: https://api.vendor.example
    credential: { file: ${cred} }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
`;
  const authority = `admin: { token: { env: ADMIN_TOKEN } }
credentials:
  vendor: { kind: static, source: { env: VENDOR_KEY } }
  filed: { kind: static, source: { file: ${cred} } }
policies: [{ identities: ["join:*"], credentials: ["*"] }]
`;
  const indent = (text: string) => `${text.trimEnd().replace(/^/gm, '  ')}\n`;
  const dev = `authority:\n${indent(authority)}sidecar:\n${indent(sidecar)}`;
  /** path → what follows it, for every warning line. */
  const warnings = (stdout: string) =>
    new Map(
      stdout
        .split('\n')
        .filter((l) => l.startsWith('warning: '))
        .map((l) => l.slice('warning: '.length))
        .map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)] as const),
    );

  it('an unset { env } secret, a missing and a group-readable file; the admin token unset', () => {
    const s = check(file('w-sidecar.yaml', sidecar));
    const a = check(file('w-authority.yaml', authority));
    const d = check(file('w-dev.yaml', dev));
    for (const r of [s, a, d]) {
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/: valid \((sidecar|authority|dev)\)\n/);
      expect(r.all).not.toContain('sk-file-value');
    }
    const [ws, wa, wd] = [warnings(s.stdout), warnings(a.stdout), warnings(d.stdout)];
    const unset = 'environment variable VENDOR_KEY is not set; this secret is unavailable until it is';
    const mode = `file ${cred} is readable or writable by group/others (mode 0640); chmod 600 it`;
    expect(ws.get('routes.vendor.credential')).toBe(unset);
    expect(wa.get('credentials.vendor.source')).toBe(unset);
    expect(wd.get('authority.credentials.vendor.source')).toBe(unset);
    expect(wd.get('sidecar.routes.vendor.credential')).toBe(unset);
    expect(ws.get('routes.filed.credential')).toBe(mode);
    expect(wa.get('credentials.filed.source')).toBe(mode);
    expect(wd.get('authority.credentials.filed.source')).toBe(mode);
    expect(wd.get('sidecar.routes.filed.credential')).toBe(mode);
    const admin = 'environment variable ADMIN_TOKEN is not set; this secret is unavailable until it is (the admin API is enabled, and the authority will not start without it)';
    expect(wa.get('admin.token')).toBe(admin);
    expect(wd.get('authority.admin.token')).toBe(admin);
    // With the variables set (and the file private), nothing to warn about.
    chmodSync(cred, 0o600);
    for (const [name, text] of [
      ['q-sidecar.yaml', sidecar],
      ['q-authority.yaml', authority],
      ['q-dev.yaml', dev],
    ] as Array<[string, string]>) {
      const quiet = check(file(name, text), { VENDOR_KEY: 'x', ADMIN_TOKEN: 'y' });
      expect(quiet.status, quiet.stderr).toBe(0);
      expect(quiet.stdout, name).not.toContain('warning:');
    }
    chmodSync(cred, 0o640);
  });
});

describe('leash check --strict and --kind', () => {
  const WARNED = `listen: 127.0.0.1:8080
admin: 0.0.0.0:9090
routes:
  a:
    upstream: https://api.example.com
    credential: { env: LEASH_CHECK_UNSET_VAR }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
`;
  const run = (args: string[]) => {
    const r = runLeash(['check', ...args]);
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('warnings alone pass, and fail under --strict with nothing called valid', () => {
    const path = file('warned.yaml', WARNED);
    const plain = run(['--config', path]);
    expect(plain.status).toBe(0);
    expect(plain.stdout).toContain('valid (sidecar)');
    const strict = run(['--config', path, '--strict']);
    expect(strict.status).toBe(1);
    expect(strict.stdout + strict.stderr).not.toMatch(/valid \(/);
    expect(strict.stderr).toContain('fail the check under --strict');
    expect(strict.stderr).toContain('admin 0.0.0.0:9090');
  });

  it('--kind overrides the guess and says so; an unknown kind is a usage error', () => {
    const path = file('kinded.yaml', WARNED);
    const r = run(['--config', path, '--kind', 'authority']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('read as an authority file, as the --kind option says');
    const bad = run(['--config', path, '--kind', 'sidekick']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('--kind must be sidecar, authority or dev');
  });
});

describe('leash check: policies that hand Kubernetes identities of other namespaces a credential', () => {
  // The namespace is the unit of trust (docs/kubernetes.md, "Policies for pod identities"):
  // a pattern with a glob there grants every tenant who may create a pod and a service
  // account of that name in a namespace it matches.
  const authority = (identities: string[], kubernetes = true) =>
    `trustDomain: leash.local
${kubernetes ? 'kubernetes: {}\n' : ''}credentials:
  github: { kind: jwt, audience: gh, ttl: 5m }
policies:
${identities.map((id) => `  - identities: [${JSON.stringify(id)}]\n    credentials: [github]`).join('\n')}
`;
  const warned = (text: string) => text.split('\n').filter((l) => l.startsWith('warning: ') && l.includes('more than one Kubernetes namespace'));
  for (const [pattern, broad] of [
    ['spiffe://leash.local/ns/*/sa/code-agent/pod/*', true],
    ['spiffe://leash.local/ns/**', true],
    ['spiffe://leash.local/**', true],
    ['spiffe://leash.local/*/*/sa/code-agent/pod/*', true],
    ['spiffe://leash.local/ns/team-*/sa/code-agent/pod/*', true],
    ['spiffe://leash.local/n*/agents*/sa/x/pod/*', true],
    ['spiffe://leash.local/ns/agents/sa/doc-agent/pod/*', false],
    ['spiffe://leash.local/ns/sandbox/**', false],
    ['spiffe://leash.local/ns/agents/sa/*/pod/*', false],
    ['spiffe://leash.local/join/*', false],
    ['join:doc-*', false],
  ] as const) {
    it(`${pattern}: ${broad ? 'warned' : 'not warned'}`, () => {
      const r = check(file(`ns-${Buffer.from(pattern).toString('hex').slice(0, 40)}.yaml`, authority([pattern])));
      expect(r.status, r.all).toBe(0);
      const lines = warned(r.stdout);
      if (broad) {
        expect(lines).toHaveLength(1);
        expect(lines[0]).toContain(`policies[0].identities[0] (${pattern})`);
        expect(lines[0]).toContain('github');
      } else expect(lines).toEqual([]);
    });
  }

  it('not warned where the authority has no Kubernetes attestor (no pod identity exists)', () => {
    const r = check(file('ns-nok8s.yaml', authority(['spiffe://leash.local/ns/*/sa/code-agent/pod/*'], false)));
    expect(r.status, r.all).toBe(0);
    expect(warned(r.stdout)).toEqual([]);
  });
});
