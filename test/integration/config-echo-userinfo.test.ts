import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../src/bin/check.js';
import { runLeash } from '../helpers/spawn.js';

/**
 * A URL's password is never echoed, whatever it holds. Config errors repeat the value
 * they refuse (`(got "…")`) and `leash check` prints Redis URLs, both with `user:password@`
 * hidden, but the hiding stopped at the first `@`, space, `"` (and a mistyped URL, the one
 * that gets refused, has no `//` for it to start from): `redis: "http://:Hunter2@Zebra@redis"`
 * printed `(got "http://…@Zebra@redis")`, `redis:/` or `rediss//` printed the password
 * whole, and `redis://u:123#x@h` was printed as `redis://u:123/?…`. Generated passwords
 * hold such characters; a password written in a URL usually comes from `${REDIS_URL}`.
 * The passwords here are words (no secret shape), so only the URL rule can hide them.
 */
const dir = mkdtempSync(join(tmpdir(), 'leash-echo-userinfo-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o600);
  return p;
};

const PASSWORDS = ['Hunter2@ZebraCrane', 'Hunter2 ZebraCrane', 'Hunter2"ZebraCrane', 'Hunter2#ZebraCrane', 'Hunter2/ZebraCrane', 'Hunter2?ZebraCrane', 'Hunter2\\ZebraCrane', '123#ZebraCrane'];
const PIECES = ['Hunter2', 'ZebraCrane', '123'];

const sidecar = (upstream: string, redis?: string) => `listen: 127.0.0.1:8080
routes:
  r:
    upstream: \${UPSTREAM}
    credential: { env: RK }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
${redis === undefined ? '' : 'revocations:\n  redis: ${REDIS_URL}\n'}`;

/**
 * `leash check` in process (the matrix is large; one case below runs the CLI itself), on a
 * value through the environment, as `${REDIS_URL}` brings a generated password in.
 */
function check(upstream: string, redis?: string) {
  const env: Record<string, string> = { RK: 'x', UPSTREAM: upstream, ...(redis === undefined ? {} : { REDIS_URL: redis }) };
  let stdout = '';
  let stderr = '';
  const status = runCheck(file('c.yaml', sidecar(upstream, redis)), env, (l) => void (stdout += `${l}\n`), (l) => void (stderr += `${l}\n`));
  return { status, stdout, stderr };
}

const expectNoPassword = (text: string, what: string) => {
  for (const p of PIECES) expect(text, `${what}: contains "${p}"`).not.toContain(p);
};

describe('URL passwords are never echoed', () => {
  it('refused Redis URLs (wrong or mistyped scheme) and valid ones printed by the plan', () => {
    for (const pw of PASSWORDS) {
      for (const url of [`http://:${pw}@redis:6379`, `redis:/:${pw}@redis:6379`, `rediss//default:${pw}@redis:6379`, `REDIS://:${pw}@redis:6379`, `redis://default:${pw}@redis:6379`, `redis://u:${pw}@redis:6379`]) {
        const r = check('https://api.example.com', url);
        expect(r.stdout + r.stderr, url).toContain('redis');
        expectNoPassword(r.stdout + r.stderr, url);
      }
    }
  });

  it('upstreams with user:password (refused, and refused for their scheme)', () => {
    for (const pw of PASSWORDS) {
      for (const url of [`https://svc:${pw}@api.example.com`, `htps://svc:${pw}@api.example.com`, `https:/svc:${pw}@api.example.com`]) {
        const r = check(url);
        expect(r.status, url).toBe(1);
        expect(r.stderr, url).toMatch(/routes\.r\.upstream: /);
        expectNoPassword(r.stdout + r.stderr, url);
      }
    }
  });

  it('the CLI: scopes --redis and leases --authority', () => {
    const ca = file('ca.pem', 'unused');
    for (const pw of PASSWORDS) {
      for (const url of [`redis:/:${pw}@redis:6379`]) {
        const r = runLeash(['scopes', '--redis', url]);
        expect(r.status, url).toBe(1);
        expectNoPassword(r.stdout + r.stderr, url);
      }
      for (const url of [`https://admin:${pw}@[authority`]) {
        const r = runLeash(['leases', '--authority', url, '--ca', ca], { LEASH_ADMIN_TOKEN: 't' });
        expect(r.stderr, url).toMatch(/--authority: not a URL/);
        expectNoPassword(r.stdout + r.stderr, url);
      }
    }
  }, 60_000);

  it('the same through the CLI', () => {
    const url = 'http://:Hunter2@ZebraCrane@redis:6379';
    const r = runLeash(['check', '--config', file('cli.yaml', sidecar('', url))], { RK: 'x', UPSTREAM: 'https://api.example.com', REDIS_URL: url });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('revocations.redis: must be a redis:// or rediss:// URL (got "http://…@redis:6379")');
    expectNoPassword(r.stdout + r.stderr, url);
  });

  it('an @ that is no password is still shown', () => {
    const r = check('https://api.example.com/v1/@me');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('route /r/ → https://api.example.com/v1/@me');
    const bad = check('https://api.example.com/v1/@me?x=1');
    expect(bad.stderr).toContain('(got "https://api.example.com/v1/@me?…")');
  });
});
