import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { parseInjectorConfig } from '../../src/config/injector.js';
import { ConfigError } from '../../src/core/errors.js';
import { mutatePod } from '../../src/injector/mutate.js';

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
});
