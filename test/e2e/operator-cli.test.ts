import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, spawnLeash, type Spawned } from '../helpers/spawn.js';
import { sleep } from '../helpers/wait.js';

/**
 * The operator's commands as processes against one `leash dev` (built-in example, 4 s
 * leases so rotations happen within the test): `leash status` (table and --json), `leash
 * trace` exit codes, the admin-token messages, and the audit lines an operator alerts on
 * (lease.released for rotations, lease.revoked only for a revocation, the `re-lease`
 * action, the path of a request to an unknown route).
 */
const run = promisify(execFile);
const ADMIN = 'operator-cli-admin-token-0123456789abcdef';

let dev: Spawned;
let adminAddr: string;
let proxy: string;
let adminEnv: Record<string, string>;
/** The `export …` line leash dev prints for the admin commands, as printed. */
let exportLine: string;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}
const leash = (args: string[], env: Record<string, string> = {}): Promise<Result> =>
  run(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

/** Lines of the dev process that are audit events named `event`. */
const events = (event: string) =>
  dev.lines.flatMap((l) => {
    try {
      const j = JSON.parse(l) as Record<string, unknown>;
      return j.event === event ? [j] : [];
    } catch {
      return [];
    }
  });

beforeAll(async () => {
  dev = spawnLeash(['dev'], { LEASH_LISTEN: '127.0.0.1:0', LEASH_ADMIN: '127.0.0.1:0', LEASH_DEMO_TTL: '4s', LEASH_ADMIN_TOKEN: ADMIN });
  const started = await dev.waitFor((l) => l.msg === 'leash sidecar started', 20_000);
  adminAddr = String(started.admin);
  proxy = `http://${String(started.listen)}`;
  // The banner tells how to reach the in-process authority; wait for it (stderr).
  const deadline = Date.now() + 10_000;
  let banner: RegExpExecArray | null = null;
  while (!(banner = /^ *(export LEASH_AUTHORITY_URL=(\S+) LEASH_CA_FILE=(\S+) LEASH_ADMIN=(\S+))$/m.exec(dev.stderr.join(''))) && Date.now() < deadline) await sleep(50);
  expect(banner, dev.stderr.join('')).not.toBeNull();
  exportLine = banner![1]!;
  adminEnv = { LEASH_AUTHORITY_URL: banner![2]!, LEASH_CA_FILE: banner![3]!, LEASH_ADMIN_TOKEN: ADMIN };
  expect(banner![4]).toBe(adminAddr);
  // The demo route holds its first lease once the sidecar has started.
  expect((await fetch(`${proxy}/demo/whoami`)).status).toBe(200);
}, 30_000);

afterAll(async () => {
  if (!dev) return;
  dev.child.kill('SIGTERM');
  expect(await dev.exit).toBe(0);
});

describe("leash dev's export line (README: paste it in another terminal)", () => {
  it('pasted whole into a shell that has only the admin token: status, leases and trace work; the token is not in it', async () => {
    expect(exportLine).not.toContain(ADMIN);
    const script = `${exportLine}\nset -e\nnode "$CLI" status\nnode "$CLI" leases\nnode "$CLI" status --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).routes.demo.fingerprint))' > fp\nnode "$CLI" trace "$(cat fp)"\n`;
    const dir = mkdtempSync(join(tmpdir(), 'leash-paste-'));
    const r = await run('sh', ['-c', script], { cwd: dir, env: { PATH: process.env.PATH ?? '', CLI, LEASH_ADMIN_TOKEN: ADMIN }, timeout: 20_000 }).then(
      (x) => ({ code: 0, ...x }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ROUTE\s+AVAILABLE/m);
    expect(r.stdout).toMatch(/^demo\s+yes\s+lease:demo\s/m);
    expect(r.stdout).toMatch(/^\S{22} {2}demo {2}sha256:[0-9a-f]{12} {2}expires /m);
    expect(r.stdout).toMatch(/ {2}lease \S+ {2}demo {2}held by spiffe:\/\/leash\.local\/join\/dev-/);
  });
});

describe('leash status', () => {
  it('prints /status as a table: one row per route, source, lease, fingerprint, never a value', async () => {
    const r = await leash(['status', '--admin', adminAddr]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^instance \S+ {3}identity spiffe:\/\/leash\.local\/join\/dev-[0-9a-f]{6}$/);
    expect(lines[1]).toMatch(/^ROUTE\s+AVAILABLE\s+CREDENTIAL\s+LEASE\s+FINGERPRINT\s+AGE\s+TTL LEFT\s+UPSTREAM$/);
    expect(lines[2]).toMatch(/^demo\s+yes\s+lease:demo\s+\S+\s+sha256:[0-9a-f]{12}\s+\d+s\s+\d+s\s+http:\/\/127\.0\.0\.1:\d+$/);
    expect(lines).toHaveLength(3);
    expect(r.stdout).not.toMatch(/eyJ/); // no JWT
  });

  it('--json prints /status itself; the address comes from LEASH_ADMIN when --admin is absent', async () => {
    const r = await leash(['status', '--json'], { LEASH_ADMIN: adminAddr });
    expect(r.code).toBe(0);
    const status = JSON.parse(r.stdout) as { routes: Record<string, { fingerprint: string; credential: string; available: boolean }> };
    const direct = (await (await fetch(`http://${adminAddr}/status`)).json()) as typeof status;
    expect(Object.keys(status.routes)).toEqual(['demo']);
    expect(status.routes.demo).toMatchObject({ credential: 'lease:demo', available: true });
    expect(status.routes.demo!.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(Object.keys(direct.routes)).toEqual(['demo']);
  });

  it('nothing listening: exit 1 with one line naming the address', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const r = await leash(['status', '--admin', `127.0.0.1:${closed}`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`leash: cannot reach the sidecar's admin listener at 127.0.0.1:${closed}: ECONNREFUSED (is leash running? --admin ADDR)\n`);
    expect((await leash(['status', '--admin', 'nonsense'])).stderr).toBe('leash: --admin: must be "host:port", e.g. "127.0.0.1:9090" (got "nonsense")\n');
  });
});

describe('leash trace', () => {
  it('exits 1 for a value nothing knows, 0 for a fingerprint an active lease holds', async () => {
    // A made-up value (never a real key): nothing holds it, so trace finds nothing.
    const unknown = await leash(['trace', 'sk-no-lease-ever-held-this-value'], adminEnv);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toContain('no active lease holds it');
    expect(unknown.stdout).not.toContain('sk-no-lease-ever-held-this-value');
    const status = JSON.parse((await leash(['status', '--json', '--admin', adminAddr])).stdout) as { routes: { demo: { fingerprint: string } } };
    const held = await leash(['trace', status.routes.demo.fingerprint], adminEnv);
    expect(held.stderr).toBe('');
    expect(held.code).toBe(0);
    expect(held.stdout).toMatch(/ {2}lease \S+ {2}demo {2}held by spiffe:\/\/leash\.local\/join\/dev-/);
  });

  it('"-" with nothing on stdin (the README\'s <<< "$OPENAI_API_KEY" where it is unset) says stdin was empty', () => {
    const r = spawnSync(process.execPath, [CLI, 'trace', '-'], { input: '\n', env: { PATH: process.env.PATH ?? '', ...adminEnv }, encoding: 'utf8', timeout: 15_000 });
    expect(r.stderr).toBe('leash: leash trace -: stdin was empty: nothing to trace (is the variable you piped in set in this shell?)\n');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
  });
});

describe('admin token', () => {
  it('a wrong token is called wrong (a missing one is "required": test/integration/revoke-authority.test.ts)', async () => {
    const wrong = await leash(['leases'], { ...adminEnv, LEASH_ADMIN_TOKEN: 'not-the-admin-token' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe('leash: authority refused (401 LEASH_ERR_UNAUTHENTICATED): admin token is wrong\n');



  });
});

describe('audit lines an operator alerts on', () => {
  it('a rotation releases its predecessor as lease.released; only a revocation is lease.revoked, applied as re-lease', async () => {
    // 4 s leases rotate about every 2 s. A displaced predecessor is released at the next
    // rotation, about one TTL after its issue, so the authority has often expired it already
    // (404, nothing audited): the release at shutdown (last test) is the deterministic one.
    // What must hold here: rotations never read as revocations.
    await dev.waitFor((l) => l.event === 'credential.rotated', 10_000);
    const rotations = () => events('credential.rotated').length;
    const deadline = Date.now() + 10_000;
    while (rotations() < 2 && Date.now() < deadline) await sleep(100);
    expect(rotations()).toBeGreaterThanOrEqual(2);
    expect(events('lease.revoked')).toEqual([]);
    for (const released of events('lease.released')) expect(released).not.toHaveProperty('reason');

    const status = JSON.parse((await leash(['status', '--json', '--admin', adminAddr])).stdout) as { routes: { demo: { lease: string } } };
    const r = await leash(['revoke', '--lease', status.routes.demo.lease, '--reason', 'operator-cli test'], adminEnv);
    expect(r.code).toBe(0);
    const revoked = await dev.waitFor((l) => l.event === 'lease.revoked', 5_000);
    expect(revoked).toMatchObject({ lease: status.routes.demo.lease, reason: 'operator-cli test' });
    const applied = await dev.waitFor((l) => l.msg === 'revocation applied' && l.scope === 'lease', 5_000);
    expect(applied.action).toBe('re-lease');
    expect(dev.lines.join('\n')).not.toContain('"relase"');
  });

  it('request.denied for an unknown route records the path (no query)', async () => {
    const res = await fetch(`${proxy}/opneai/v1/chat/completions?key=sk-query-secret-value`);
    expect(res.status).toBe(404);
    const denied = await dev.waitFor((l) => l.event === 'request.denied' && l.status === 404, 5_000);
    expect(denied).toMatchObject({ path: '/opneai/v1/chat/completions', reason: 'leash_no_route' });
    expect(denied.route ?? null).toBeNull();
    expect(dev.lines.join('\n')).not.toContain('sk-query-secret-value');
  });
});

describe('shutdown', () => {
  it('releases every held lease as lease.released (never lease.revoked), exit 0', async () => {
    const status = JSON.parse((await leash(['status', '--json', '--admin', adminAddr])).stdout) as { routes: { demo: { lease: string } } };
    const held = status.routes.demo.lease;
    const revokedBefore = events('lease.revoked').length;
    dev.child.kill('SIGTERM');
    expect(await dev.exit).toBe(0);
    const released = events('lease.released').find((e) => e.lease === held);
    expect(released, `no lease.released for ${held}`).toMatchObject({ component: 'authority', credential: 'demo', identity: expect.stringMatching(/^spiffe:\/\/leash\.local\/join\/dev-/) });
    expect(released!.fingerprint).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(released).not.toHaveProperty('reason');
    expect(events('lease.revoked').length).toBe(revokedBefore);
    // Closing its own revocation subscription is not the channel going down.
    expect(dev.lines.filter((l) => l.includes('revocation channel'))).toEqual([]);
  });
});
