import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { expectLeashError, pollUntil, rawRequest } from '../helpers/proxy-util.js';

/**
 * Credential sources on the data path: a file that is rotated the ways Kubernetes and
 * people rotate files, removed and restored; an environment variable that is missing;
 * and the three injection forms. Fingerprints are computed here independently.
 */
const fp = (value: string) => `sha256:${createHash('sha256').update(value, 'utf8').digest('hex').slice(0, 12)}`;
const FP = /^sha256:[0-9a-f]{12}$/;
const inject = { header: 'authorization', format: 'Bearer {{credential}}' };

interface Hit {
  url: string;
  headers: IncomingHttpHeaders;
}
let upstream: Upstream;
let hits: Hit[] = [];
let leash: RunningSidecar | undefined;
const dirs: string[] = [];

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    hits.push({ url: req.url ?? '', headers: req.headers });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, auth: req.headers.authorization ?? null }));
  });
});

afterAll(async () => {
  await upstream?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

afterEach(async () => {
  await leash?.stop();
  leash = undefined;
  hits = [];
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'leash-cred-'));
  dirs.push(d);
  return d;
}

async function fileSidecar(path: string): Promise<RunningSidecar> {
  leash = await startSidecar({
    routes: { filed: { upstream: upstream.url, credential: { file: path }, inject, allow: ['GET /v1/**'] } },
  });
  return leash;
}

async function authSeen(l: RunningSidecar): Promise<string | null> {
  const r = await rawRequest(`${l.url}/filed/v1/whoami`);
  if (r.status !== 200) return `status ${r.status}`;
  return (JSON.parse(r.body.toString()) as { auth: string | null }).auth;
}

/** Poll with real requests until the upstream sees `Bearer value`; returns how long it took. */
async function untilUsed(l: RunningSidecar, value: string): Promise<number> {
  const started = performance.now();
  await pollUntil(async () => ((await authSeen(l)) === `Bearer ${value}` ? true : undefined), 2_500, `the upstream to receive the new credential`);
  return performance.now() - started;
}

function expectRotationAudited(l: RunningSidecar, from: string, to: string): void {
  const rotated = l.logs.events('credential.rotated');
  const match = rotated.find((e) => e.previousFingerprint === fp(from) && e.fingerprint === fp(to));
  expect(match, `credential.rotated ${fp(from)} → ${fp(to)} in ${JSON.stringify(rotated)}`).toBeTruthy();
  expect(match!.fingerprint).toMatch(FP);
  expect(match!.previousFingerprint).toMatch(FP);
  expect(match!.route).toBe('filed');
  expect(match!.audit).toBe(true);
}

function expectNoValueLogged(l: RunningSidecar, values: string[]): void {
  const all = l.logs.lines.join('\n');
  for (const v of values) expect(all).not.toContain(v);
}

describe('file credentials rotate without a restart', () => {
  it('write-temp-then-rename is picked up within ~2 s and audited by fingerprint', async () => {
    const dir = tempDir();
    const path = join(dir, 'token');
    const v1 = 'file-secret-one-7f3a9c2e5b1d';
    const v2 = 'file-secret-two-4e8b0d6a2c9f';
    writeFileSync(path, `${v1}\n`);
    const l = await fileSidecar(path);
    expect(await authSeen(l)).toBe(`Bearer ${v1}`);
    const acquired = l.logs.events('credential.acquired');
    expect(acquired.map((e) => e.fingerprint)).toEqual([fp(v1)]);

    writeFileSync(join(dir, '.token.tmp'), v2);
    renameSync(join(dir, '.token.tmp'), path);
    const ms = await untilUsed(l, v2);
    expect(ms).toBeLessThan(2_500);
    // Once switched, it stays switched.
    expect(await authSeen(l)).toBe(`Bearer ${v2}`);
    expectRotationAudited(l, v1, v2);
    expectNoValueLogged(l, [v1, v2]);
  });

  it('a plain overwrite in place is picked up too', async () => {
    const dir = tempDir();
    const path = join(dir, 'token');
    const v1 = 'overwrite-secret-a-1c2d3e4f5a6b';
    const v2 = 'overwrite-secret-b-9f8e7d6c5b4a';
    writeFileSync(path, v1);
    const l = await fileSidecar(path);
    expect(await authSeen(l)).toBe(`Bearer ${v1}`);
    writeFileSync(path, v2);
    await untilUsed(l, v2);
    expectRotationAudited(l, v1, v2);
    expectNoValueLogged(l, [v1, v2]);
  });

  it('a Kubernetes-style ..data symlink swap is picked up', async () => {
    const dir = tempDir();
    const v1 = 'k8s-secret-first-0a1b2c3d4e5f';
    const v2 = 'k8s-secret-second-6a7b8c9d0e1f';
    // dir/token → ..data/token, ..data → ..2024_01 (what the kubelet builds for a Secret volume)
    mkdirSync(join(dir, '..2024_01'));
    writeFileSync(join(dir, '..2024_01', 'token'), v1);
    symlinkSync('..2024_01', join(dir, '..data'));
    symlinkSync('..data/token', join(dir, 'token'));
    const l = await fileSidecar(join(dir, 'token'));
    expect(await authSeen(l)).toBe(`Bearer ${v1}`);
    // The update: new timestamped dir, new symlink, atomic rename over ..data, old dir removed.
    mkdirSync(join(dir, '..2024_02'));
    writeFileSync(join(dir, '..2024_02', 'token'), v2);
    symlinkSync('..2024_02', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..2024_01'), { recursive: true });
    await untilUsed(l, v2);
    expectRotationAudited(l, v1, v2);
    expectNoValueLogged(l, [v1, v2]);
  });

  it('deleting the file makes the route 503 leash_credential_unavailable (+Retry-After) and /readyz 503; restoring recovers', async () => {
    const dir = tempDir();
    const path = join(dir, 'token');
    const v1 = 'deleted-secret-5d4c3b2a1f0e';
    const v2 = 'restored-secret-0e1f2a3b4c5d';
    writeFileSync(path, v1);
    const l = await fileSidecar(path);
    expect(await authSeen(l)).toBe(`Bearer ${v1}`);
    expect((await rawRequest(`${l.adminUrl}/readyz`)).status).toBe(200);

    unlinkSync(path);
    const refused = await pollUntil(
      async () => {
        const r = await rawRequest(`${l.url}/filed/v1/whoami`);
        return r.status === 503 ? r : undefined;
      },
      2_500,
      'the route to refuse once the file is gone',
    );
    expectLeashError(refused, 'leash_credential_unavailable', 503, 'filed');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const hitsBefore = hits.length;
    const again = await rawRequest(`${l.url}/filed/v1/whoami`, { headers: { authorization: 'Bearer agent-own' } });
    expect(again.status).toBe(503);
    expect(hits.length).toBe(hitsBefore); // nothing unauthenticated (or agent-authenticated) went upstream
    const ready = await rawRequest(`${l.adminUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body.toString())).toMatchObject({ ready: false, unavailable: ['filed'] });
    const status = JSON.parse((await rawRequest(`${l.adminUrl}/status`)).body.toString()) as { routes: Record<string, { available: boolean; fingerprint: unknown }> };
    expect(status.routes.filed).toMatchObject({ available: false, fingerprint: null });
    expect(l.logs.events('credential.refresh_failed').length).toBeGreaterThanOrEqual(1);

    writeFileSync(path, v2);
    await untilUsed(l, v2);
    expect((await rawRequest(`${l.adminUrl}/readyz`)).status).toBe(200);
    expectNoValueLogged(l, [v1, v2]);
  });
});

describe('environment credentials', () => {
  it('a missing variable makes its route unavailable and /readyz 503 listing it; other routes keep working', async () => {
    const present = 'env-present-secret-3f2e1d0c9b8a';
    leash = await startSidecar(
      {
        routes: {
          ok: { upstream: upstream.url, credential: { env: 'PRESENT_KEY' }, inject, allow: ['GET /v1/**'] },
          missing: { upstream: upstream.url, credential: { env: 'MISSING_KEY' }, inject, allow: ['GET /v1/**'] },
          empty: { upstream: upstream.url, credential: { env: 'EMPTY_KEY' }, inject, allow: ['GET /v1/**'] },
        },
      },
      { env: { PRESENT_KEY: present, EMPTY_KEY: '' } },
    );
    const ok = await rawRequest(`${leash.url}/ok/v1/x`);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body.toString()).auth).toBe(`Bearer ${present}`);
    hits = [];
    for (const route of ['missing', 'empty']) {
      const r = await rawRequest(`${leash.url}/${route}/v1/x`, { headers: { authorization: 'Bearer agent-own' } });
      expectLeashError(r, 'leash_credential_unavailable', 503, route);
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    expect(hits).toEqual([]);
    const ready = await rawRequest(`${leash.adminUrl}/readyz`);
    expect(ready.status).toBe(503);
    const body = JSON.parse(ready.body.toString()) as { unavailable: string[] };
    expect([...body.unavailable].sort()).toEqual(['empty', 'missing']);
    const failed = leash.logs.events('credential.refresh_failed');
    expect(failed.find((e) => e.route === 'missing')?.error).toMatch(/MISSING_KEY/);
  });

  it('/status shows the fingerprint and source, never the value', async () => {
    const secret = 'status-secret-8a7b6c5d4e3f2a1b';
    leash = await startSidecar(
      { routes: { api: { upstream: upstream.url, credential: { env: 'API_KEY' }, inject, allow: ['GET /v1/**'] } } },
      { env: { API_KEY: secret } },
    );
    const r = await rawRequest(`${leash.adminUrl}/status`);
    expect(r.status).toBe(200);
    const text = r.body.toString();
    expect(text).not.toContain(secret);
    const status = JSON.parse(text) as { instance: { id: string }; routes: Record<string, Record<string, unknown>> };
    expect(status.instance.id).toBeTruthy();
    expect(status.routes.api).toMatchObject({ credential: 'env:API_KEY', fingerprint: fp(secret), available: true });
    expect(status.routes.api!.fingerprint).toMatch(FP);
    expect(typeof status.routes.api!.ageSeconds).toBe('number');
  });
});

describe('injection forms', () => {
  it('{ query: key } sets the credential as the query parameter and drops every `key` the agent sent', async () => {
    const secret = 'qk-AbC+dEf/GhI=jKl0123456789';
    leash = await startSidecar(
      { routes: { q: { upstream: `${upstream.url}/api`, credential: { env: 'Q_KEY' }, inject: { query: 'key' }, allow: ['GET /v1/**'] } } },
      { env: { Q_KEY: secret } },
    );
    const r = await rawRequest(`${leash.url}/q/v1/search?key=agent-own&x=1&%6Bey=encoded-name&y=a%20b&key=again&keys=kept`, {
      headers: { authorization: 'Bearer agent-own' },
    });
    expect(r.status).toBe(200);
    expect(hits).toHaveLength(1);
    const u = new URL(hits[0]!.url, 'http://x');
    expect(u.pathname).toBe('/api/v1/search');
    expect(u.searchParams.getAll('key')).toEqual([secret]);
    expect(u.searchParams.get('x')).toBe('1');
    expect(u.searchParams.get('y')).toBe('a b');
    expect(u.searchParams.get('keys')).toBe('kept');
    expect(hits[0]!.url).not.toContain('agent-own');
    expect(hits[0]!.url).not.toContain('encoded-name');
    expect(hits[0]!.headers.authorization).toBeUndefined();
    // With no query at all, the parameter is added.
    await rawRequest(`${leash.url}/q/v1/plain`);
    expect(new URL(hits[1]!.url, 'http://x').searchParams.getAll('key')).toEqual([secret]);
    expect(leash.logs.lines.join('\n')).not.toContain(encodeURIComponent(secret));
  });

  it('{ basic: { username } } sends Basic auth in place of the agent’s Authorization', async () => {
    const secret = 'basic-pass-2b3c4d5e6f7a8b9c';
    leash = await startSidecar(
      { routes: { b: { upstream: upstream.url, credential: { env: 'B_KEY' }, inject: { basic: { username: 'svc-user' } }, allow: ['GET /v1/**'] } } },
      { env: { B_KEY: secret } },
    );
    const r = await rawRequest(`${leash.url}/b/v1/thing`, { headers: { authorization: 'Basic YWdlbnQ6b3du' } });
    expect(r.status).toBe(200);
    const auth = hits[0]!.headers.authorization!;
    expect(auth).toBe(`Basic ${Buffer.from(`svc-user:${secret}`).toString('base64')}`);
    expect(Buffer.from(auth.slice(6), 'base64').toString()).toBe(`svc-user:${secret}`);
  });
});
