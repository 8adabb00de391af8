import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { parseInjectorConfig } from '../../src/config/injector.js';
import { ConfigError } from '../../src/core/errors.js';
import { mutatePod } from '../../src/injector/mutate.js';
import { containerEnv } from '../helpers/kubelet-env.js';
import { collectConfig, readDocument } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { parse } from 'yaml';
import { Container } from 'kubernetes-models/v1/Container';

/** The injector's config: key paths in every problem, the example accepted by leash check, extra sidecar sections passed on. */

const problems = (text: string): string[] => {
  try {
    parseInjectorConfig(text, {});
  } catch (e) {
    if (e instanceof ConfigError) return [...e.issues];
    throw e;
  }
  return [];
};

const GOOD = `
tls: { certFile: /tls/tls.crt, keyFile: /tls/tls.key }
image: leash:1
authority: { url: "https://authority.example:8443" }
sidecar: { revocations: { redis: "redis://redis:6379" }, rotation: { at: 0.6 } }
routes:
  openai:
    upstream: https://api.openai.com
    credential: openai
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /v1/models"]
    agentEnv: { OPENAI_BASE_URL: "{{baseUrl}}/v1" }
`;

describe('injector config', () => {
  it('parses with defaults, keeps each route as written and passes sidecar sections on', () => {
    const inj = parseInjectorConfig(GOOD, {});
    expect(inj.config.listen).toEqual({ host: '0.0.0.0', port: 8443 });
    expect(inj.config.ports).toEqual({ proxy: 15080, admin: 15090 });
    expect(inj.catalog.openai).toEqual({ upstream: 'https://api.openai.com', credential: 'openai', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /v1/models'] });
    const d = mutatePod(inj, { metadata: { annotations: { 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' } }, spec: { containers: [{ name: 'a' }] } });
    expect(d.allowed).toBe(true);
  });

  it('names the key path of every problem, in the route catalog and the sidecar sections too', () => {
    const bad = GOOD.replace('image: leash:1\n', '')
      .replace('upstream: https://api.openai.com', 'upstream: ftp://x')
      .replace('OPENAI_BASE_URL:', '"bad name":')
      .replace('credential: openai', 'credential: openai\n    bogus: 1');
    const lines = problems(bad);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^image: /),
        expect.stringMatching(/^routes\.openai\.upstream: must be an http\(s\) URL/),
        expect.stringMatching(/^routes\.openai\.agentEnv/),
        expect.stringMatching(/^routes\.openai\.bogus: unknown key/),
      ]),
    );
    expect(problems(GOOD.replace('at: 0.6', 'at: 7'))).toEqual([expect.stringMatching(/^sidecar\.rotation\.at: /)]);
    expect(problems(GOOD.replace('sidecar: {', 'sidecar: { listen: "0.0.0.0:1", '))).toEqual([expect.stringMatching(/^sidecar\.listen: is written by the injector/)]);
  });

  it('leash check recognises examples/injector.yaml and accepts it', () => {
    const out: string[] = [];
    const err: string[] = [];
    const path = new URL('../../examples/injector.yaml', import.meta.url).pathname;
    expect(readFileSync(path, 'utf8')).toContain('leash.dev/inject');
    expect(runCheck(path, {}, (l) => out.push(l), (l) => err.push(l))).toBe(0);
    expect(out[0]).toBe(`config ${path}: valid (injector)`);
    expect(err).toEqual([]);
  });

  it('nothing secret goes into pods: a password in a URL, or an { env } / { file } source, is refused by key path, never echoed', () => {
    const withSidecar = (sidecar: string, credential = 'openai') => GOOD.replace('sidecar: { revocations: { redis: "redis://redis:6379" }, rotation: { at: 0.6 } }', `sidecar: ${sidecar}`).replace('credential: openai', `credential: ${credential}`);
    const pw = 's3cret-authority-pass';
    const cases: Array<[string, string]> = [
      [withSidecar(`{ revocations: { redis: "redis://:${pw}@redis.leash-system.svc:6379" } }`), 'sidecar.revocations.redis: a password in a URL'],
      [withSidecar(`{ audit: { redis: "rediss://leash:${pw}@redis:6380/0" } }`), 'sidecar.audit.redis: a password in a URL'],
      [withSidecar('{ revocations: { redis: { sentinels: [{ host: s, port: 26379 }], name: m, password: { env: REDIS_PASSWORD } } } }'), 'sidecar.revocations.redis.password: { env } sources are read in the agent'],
      [withSidecar('{}', '{ env: OPENAI_API_KEY }'), 'routes.openai.credential: { env } sources'],
      [withSidecar('{}', '{ file: /run/secrets/openai }'), 'routes.openai.credential: { file } sources'],
    ];
    for (const [text, expected] of cases) {
      const found = problems(text);
      expect(found.join('\n'), expected).toContain(expected);
      expect(found.join('\n')).not.toContain(pw);
    }
    // A URL without a password, and lease names, pass.
    expect(problems(withSidecar('{ revocations: { redis: "redis://redis.leash-system.svc:6379" } }'))).toEqual([]);
  });

  it('a Redis password from a Secret in the pod\'s namespace: the spec names the Secret, the sidecar config reads the projected file', () => {
    const text = GOOD.replace(
      'sidecar: { revocations: { redis: "redis://redis:6379" }, rotation: { at: 0.6 } }',
      `sidecar:
  revocations: { redis: { url: "redis://leash-sidecar@redis.leash-system.svc:6379", password: { secretKeyRef: { name: leash-redis-sidecar, key: password } } } }
  audit: { redis: { sentinels: [{ host: s, port: 26379 }], name: m, password: { secretKeyRef: { name: leash-audit, key: pw.txt } } } }`,
    );
    const inj = parseInjectorConfig(text, {});
    expect(inj.secretFiles).toEqual([
      { path: 'revocations-redis-password', secretKeyRef: { name: 'leash-redis-sidecar', key: 'password' } },
      { path: 'audit-redis-password', secretKeyRef: { name: 'leash-audit', key: 'pw.txt' } },
    ]);
    const d = mutatePod(inj, { metadata: { annotations: { 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' } }, spec: { containers: [{ name: 'a' }] } });
    if (!d.allowed) throw new Error(d.message);
    const sidecar = d.patch!.find((op) => op.path.startsWith('/spec/initContainers'))!.value as { env: Array<{ name: string; value?: string; valueFrom?: unknown }> };
    const sc = Array.isArray(sidecar) ? (sidecar[0] as typeof sidecar) : sidecar;
    // No password in the environment: a file in the sidecar's own projected volume, which
    // the kubelet updates when the Secret changes (read again at every reconnection).
    expect(sc.env.filter((e) => e.valueFrom && !('fieldRef' in (e.valueFrom as object)))).toEqual([]);
    const volume = d.patch!.find((op) => op.path.startsWith('/spec/volumes'))!.value as { name: string; projected: { sources: unknown[] } } | Array<{ name: string; projected: { sources: unknown[] } }>;
    const sources = (Array.isArray(volume) ? volume[0]! : volume).projected.sources;
    expect(sources.slice(2)).toEqual([
      { secret: { name: 'leash-redis-sidecar', items: [{ key: 'password', path: 'revocations-redis-password' }] } },
      { secret: { name: 'leash-audit', items: [{ key: 'pw.txt', path: 'audit-redis-password' }] } },
    ]);
    // The environment as the sidecar's process gets it (after the kubelet's $(VAR) / $$ expansion).
    const env = containerEnv(sc.env as Parameters<typeof containerEnv>[0], { 'metadata.name': 'p-1' });
    const config = parse(env.LEASH_CONFIG!) as { revocations: unknown; audit: unknown };
    expect(config.revocations).toEqual({ redis: { url: 'redis://leash-sidecar@redis.leash-system.svc:6379', password: { file: '/var/run/secrets/leash/revocations-redis-password' } } });
    expect(config.audit).toEqual({ redis: { sentinels: [{ host: 's', port: 26379 }], name: 'm', password: { file: '/var/run/secrets/leash/audit-redis-password' } } });
    // The injected config is a valid sidecar file.
    const read = collectConfig(sidecarSchema, readDocument(env.LEASH_CONFIG!, env));
    expect(read.problems).toEqual([]);
    expect(read.value!.instance.id).toBe('p-1');
    // A valid Kubernetes container (the schema the API server applies).
    expect(() => new Container(sc as ConstructorParameters<typeof Container>[0]).validate()).not.toThrow();
    // No secretKeyRef: nothing from Secrets.
    expect(parseInjectorConfig(GOOD, {}).secretFiles).toEqual([]);
  });

  it('{ secretKeyRef } is refused anywhere but a Redis password, in a route above all, and when malformed: by key path', () => {
    const withSidecar = (sidecar: string, credential = 'openai') =>
      GOOD.replace('sidecar: { revocations: { redis: "redis://redis:6379" }, rotation: { at: 0.6 } }', `sidecar: ${sidecar}`).replace('credential: openai', `credential: ${credential}`);
    const ref = '{ secretKeyRef: { name: s, key: k } }';
    const redis = (password: string) => `{ revocations: { redis: { url: "redis://u@r:6379", password: ${password} } } }`;
    const cases: Array<[string, RegExp]> = [
      [withSidecar('{}', ref), /^routes\.openai\.credential: \{ secretKeyRef \} is not taken in a route/],
      [withSidecar(`{ log: { level: ${ref} } }`), /^sidecar\.log\.level: \{ secretKeyRef \} is taken for revocations\.redis\.password and audit\.redis\.password only/],
      [withSidecar(`{ revocations: { redis: ${ref} } }`), /^sidecar\.revocations\.redis: \{ secretKeyRef \} is taken for/],
      [withSidecar(redis('{ secretKeyRef: { name: "Not_A_Name", key: k } }')), /^sidecar\.revocations\.redis\.password\.secretKeyRef\.name: /],
      [withSidecar(redis('{ secretKeyRef: { name: s, key: "a/b" } }')), /^sidecar\.revocations\.redis\.password\.secretKeyRef\.key: /],
      [withSidecar(redis('{ secretKeyRef: { name: s, key: k, optional: true } }')), /^sidecar\.revocations\.redis\.password\.secretKeyRef\.optional: unknown key/],
      [withSidecar(redis('{ secretKeyRef: { name: s, key: k }, env: X }')), /^sidecar\.revocations\.redis\.password\.env: unknown key/],
      [withSidecar(redis('{ secretKeyRef: s }')), /^sidecar\.revocations\.redis\.password\.secretKeyRef: must be \{ name, key \}/],
      // The URL names the user only: a password in it is refused as before.
      [withSidecar(`{ revocations: { redis: { url: "redis://u:made-up-pw@r:6379", password: ${ref} } } }`), /^sidecar\.revocations\.redis/],
    ];
    for (const [text, expected] of cases) {
      const found = problems(text);
      expect(found.some((p) => expected.test(p)), `${expected} in ${JSON.stringify(found)}`).toBe(true);
      expect(found.join('\n')).not.toContain('made-up-pw');
    }
  });
});
