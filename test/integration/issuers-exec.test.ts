import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IssuerError } from '../../src/authority/issuers/errors.js';
import { ExecIssuer, type ExecIssuerOptions } from '../../src/authority/issuers/exec.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { rejection, request, tempDir } from '../helpers/issuers-util.js';
import { sleep } from '../helpers/wait.js';

// Made up for this test, as are the key and JWT below (no real credential).
const SECRET = 'ghs_exec-minted-secret-0123456789';
let dir: string;
let cleanup: () => void;
beforeAll(() => {
  ({ dir, cleanup } = tempDir());
});
afterAll(() => cleanup());
const issuers: ExecIssuer[] = [];
afterEach(async () => {
  for (const i of issuers.splice(0)) await i.close();
});

let n = 0;
/** A node script as the command: `process.execPath <tmp>/script-N.mjs`. */
function script(body: string, over: Partial<ExecIssuerOptions> = {}): ExecIssuer {
  const file = join(dir, `script-${++n}.mjs`);
  writeFileSync(file, body);
  const issuer = new ExecIssuer({ command: [process.execPath, file], env: { PATH: '/usr/bin:/bin', HOME: '/root', OTHER: 'x' }, credential: 'github', ...over });
  issuers.push(issuer);
  return issuer;
}
const expectNoStdout = (err: Error): void => {
  expect(err.message).not.toContain(SECRET);
  expect(JSON.stringify((err as IssuerError).context)).not.toContain(SECRET);
};

describe('ExecIssuer', () => {
  it('ttlSeconds: value, version = fingerprint, expiry = min(ttlSeconds, maxTtl); the lease env is passed, nothing else but PATH', async () => {
    const issuer = script(`
      const keys = Object.keys(process.env).filter((k) => k !== 'PATH' && !k.startsWith('LEASH_')).sort();
      process.stdout.write(JSON.stringify({ value: ${JSON.stringify(SECRET)} + '|' + JSON.stringify({
        id: process.env.LEASH_IDENTITY, cred: process.env.LEASH_CREDENTIAL, lease: process.env.LEASH_LEASE_ID,
        max: process.env.LEASH_MAX_TTL_SECONDS, path: process.env.PATH, keys }), ttlSeconds: 600 }));`);
    const req = request({ maxTtlMs: 3_600_000, leaseId: 'lease-abc' });
    const out = await issuer.issue(req);
    const [value, envJson] = out.value.split('|');
    expect(value).toBe(SECRET);
    expect(JSON.parse(envJson!)).toMatchObject({ id: req.identity, cred: 'test-cred', lease: 'lease-abc', max: '3600', path: '/usr/bin:/bin' });
    // Linux adds nothing; some platforms inject a few variables of their own into every process.
    expect(JSON.parse(envJson!).keys).not.toContain('HOME');
    expect(JSON.parse(envJson!).keys).not.toContain('OTHER');
    expect(out.version).toBe(fingerprint(out.value));
    expect(out.expiresAtMs).toBe(req.nowMs + 600_000);
    const capped = request({ maxTtlMs: 60_000 });
    expect((await issuer.issue(capped)).expiresAtMs).toBe(capped.nowMs + 60_000);
  });

  it('expiresAt (ISO) sets the expiry; passEnv passes named variables through', async () => {
    const at = new Date(Date.now() + 120_000).toISOString();
    const issuer = script(`console.log(JSON.stringify({ value: 'tok-' + process.env.OTHER, expiresAt: ${JSON.stringify(at)} }));`, { passEnv: ['OTHER'] });
    const req = request({ maxTtlMs: 3_600_000 });
    const out = await issuer.issue(req);
    expect(out.value).toBe('tok-x');
    expect(out.expiresAtMs).toBe(Date.parse(at));
  });

  it('no lifetime in the output: the configured ttl applies; without one it is an error', async () => {
    const req = request({ maxTtlMs: 3_600_000 });
    expect((await script(`console.log('{"value":"v"}')`, { ttlMs: 1_800_000 }).issue(req)).expiresAtMs).toBe(req.nowMs + 1_800_000);
    expect((await rejection(script(`console.log('{"value":"v"}')`).issue(request()))).code).toBe('LEASH_ERR_ISSUER_RESPONSE');
  });

  it('a slow command is killed at the timeout (with its children) and fails fast', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    const issuer = script(
      `import { spawn } from 'node:child_process'; import { writeFileSync } from 'node:fs';
       const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
       writeFileSync(${JSON.stringify(pidFile)}, String(c.pid));
       setTimeout(() => console.log('{"value":"late","ttlSeconds":60}'), 30000);`,
      { timeoutMs: 400 },
    );
    const t0 = Date.now();
    const err = await rejection(issuer.issue(request()));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err).toBeInstanceOf(IssuerError);
    expect(err.code).toBe('LEASH_ERR_ISSUER_TIMEOUT');
    expect(err.message).toBe(`exec issuer for credential "test-cred": command ${process.execPath} did not finish within 400ms (killed)`);
    const { readFileSync } = await import('node:fs');
    const gpid = Number(readFileSync(pidFile, 'utf8'));
    // Dead = gone, or a zombie waiting for init to reap it (its parent, the script, is dead too).
    const alive = (): boolean => {
      try {
        process.kill(gpid, 0);
      } catch {
        return false;
      }
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${gpid}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    for (let i = 0; i < 50 && alive(); i++) await sleep(20);
    expect(alive()).toBe(false); // the process group went down, not just the direct child
  });

  it('exit 1 → LEASH_ERR_ISSUER_EXEC naming the command and the status, with at most 200 chars of stderr and no stdout', async () => {
    const issuer = script(`process.stdout.write(${JSON.stringify(SECRET)}); process.stderr.write('mint failed: ' + 'E'.repeat(500)); process.exit(1);`);
    const err = await rejection(issuer.issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_EXEC');
    expect(err.message).toContain(`command ${process.execPath} exited with status 1: mint failed: EEE`);
    expect(err.message.length).toBeLessThan(200 + 200);
    expect(err.message).not.toContain('E'.repeat(200));
    expectNoStdout(err);
  });

  it('stderr words that look like secrets (curl -v, set -x, SDK errors) are redacted before they are shown', async () => {
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ';
    const issuer = script(`process.stderr.write("> Authorization: token ${SECRET}\\n+ T=${jwt}\\nkey='sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vw'\\n"); process.exit(22);`);
    const err = await rejection(issuer.issue(request()));
    expect(err.message).toContain('exited with status 22: > Authorization: token [REDACTED]');
    expect(err.message).not.toContain(SECRET);
    expect(err.message).not.toContain(jwt);
    expect(err.message).not.toContain('Ab3De5Gh7Jk9');
    // A realistic installation token is redacted by its shape alone.
    const ghs = 'ghs_16C7e42F292c6912E7710c838347Ae178B4a';
    const shaped = await rejection(script(`process.stderr.write("T=${ghs} failed"); process.exit(1);`).issue(request()));
    expect(shaped.message).toContain('exited with status 1: T=[REDACTED] failed');
  });

  it('garbage, non-object JSON, a missing value → LEASH_ERR_ISSUER_RESPONSE without the output', async () => {
    for (const body of [
      `process.stdout.write('value=${SECRET}')`,
      `console.log(JSON.stringify(['${SECRET}']))`,
      `console.log(JSON.stringify({ token: '${SECRET}', ttlSeconds: 60 }))`,
      `console.log(JSON.stringify({ value: '', ttlSeconds: 60, note: '${SECRET}' }))`,
    ]) {
      const err = await rejection(script(body).issue(request()));
      expect(err.code, body).toBe('LEASH_ERR_ISSUER_RESPONSE');
      expect(err.message, body).toContain(`command ${process.execPath} printed`);
      expectNoStdout(err);
    }
  });

  it('a value no sidecar could inject (CR/LF, controls, non-ASCII, > 16 KiB) → LEASH_ERR_ISSUER_RESPONSE without the output', async () => {
    for (const value of [`${SECRET}\r\nX-Injected: 1`, `${SECRET}\u0007`, `${SECRET}é`, `${SECRET} `, 'A'.repeat(16 * 1024 + 1)]) {
      const err = await rejection(script(`console.log(JSON.stringify({ value: ${JSON.stringify(value)}, ttlSeconds: 60 }));`).issue(request()));
      expect(err.code, JSON.stringify(value.slice(-3))).toBe('LEASH_ERR_ISSUER_RESPONSE');
      expectNoStdout(err);
    }
  });

  it('ttlSeconds ≤ 0, a non-numeric ttl and an expiresAt in the past are refused', async () => {
    const past = new Date(Date.now() - 1000).toISOString();
    for (const extra of ['"ttlSeconds": 0', '"ttlSeconds": -5', '"ttlSeconds": "60"', `"expiresAt": "${past}"`, '"expiresAt": "soon"']) {
      const err = await rejection(script(`console.log('{"value":"${SECRET}", ${extra.replace(/'/g, "\\'")}}')`).issue(request()));
      expect(err.code, extra).toBe('LEASH_ERR_ISSUER_RESPONSE');
      expectNoStdout(err);
    }
  });

  it('huge output beyond the limit → LEASH_ERR_ISSUER_EXEC, the command killed', async () => {
    const issuer = script(`const chunk = '${SECRET}'.repeat(1000); const w = () => { while (process.stdout.write(chunk)); process.stdout.once('drain', w); }; w();`, {
      maxOutputBytes: 64 * 1024,
    });
    const err = await rejection(issuer.issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_EXEC');
    expect(err.message).toContain('more than 65536 bytes');
    expectNoStdout(err);
  });

  it('a command that cannot start → LEASH_ERR_ISSUER_EXEC (ENOENT); an empty command is a config error', async () => {
    const issuer = new ExecIssuer({ command: [join(dir, 'no-such-binary')], env: {} });
    issuers.push(issuer);
    const err = await rejection(issuer.issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_EXEC');
    expect(err.message).toContain('ENOENT');
    expect(() => new ExecIssuer({ command: [] })).toThrow(IssuerError);
  });

  it('at most maxConcurrent commands run at once; the others wait for a slot within the timeout', async () => {
    const counter = join(dir, 'concurrency');
    writeFileSync(counter, '');
    // Each run appends "+" when it starts and "-" when it ends: the running count never passes 4.
    const issuer = script(
      `import fs from 'node:fs'; fs.appendFileSync(${JSON.stringify(counter)}, '+');
       setTimeout(() => { fs.appendFileSync(${JSON.stringify(counter)}, '-'); console.log(JSON.stringify({ value: 'v' + process.pid, ttlSeconds: 60 })); }, 150);`,
      { maxConcurrent: 4, timeoutMs: 5_000 },
    );
    const results = await Promise.all(Array.from({ length: 20 }, () => issuer.issue(request()).then(() => 'ok', (e: IssuerError) => e.code)));
    expect(results.every((r) => r === 'ok')).toBe(true);
    let running = 0;
    let peak = 0;
    for (const c of readFileSync(counter, 'utf8')) peak = Math.max(peak, (running += c === '+' ? 1 : -1));
    expect(peak).toBe(4);
    // A lease that cannot get a slot within the timeout fails as a timeout, naming the limit.
    const slow = script('setTimeout(() => {}, 5_000);', { maxConcurrent: 1, timeoutMs: 300 });
    const [first, second] = await Promise.all([rejection(slow.issue(request())), rejection(slow.issue(request()))]);
    expect(first.code).toBe('LEASH_ERR_ISSUER_TIMEOUT');
    expect(second.code).toBe('LEASH_ERR_ISSUER_TIMEOUT');
    expect(second.message).toContain('no free slot within 300ms (1 commands running)');
  });

  it('close() kills running commands and refuses new issues', async () => {
    const issuer = script(`setTimeout(() => {}, 30000)`);
    const pending = rejection(issuer.issue(request()));
    await sleep(100);
    await issuer.close();
    const err = await pending;
    expect(err.code).toBe('LEASH_ERR_ISSUER_EXEC');
    expect(err.message).toContain('closing');
    expect((await rejection(issuer.issue(request()))).code).toBe('LEASH_ERR_ISSUER_CLOSED');
  });
});
