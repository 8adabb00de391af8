import { renameSync, rmSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fingerprint } from '../../src/core/fingerprint.js';
import { IssuerError } from '../../src/authority/issuers/errors.js';
import { StaticIssuer } from '../../src/authority/issuers/static.js';
import { rejection, request, tempDir, until } from '../helpers/issuers-util.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});
function make(opts: ConstructorParameters<typeof StaticIssuer>[0]): StaticIssuer {
  const issuer = new StaticIssuer(opts);
  cleanups.push(() => issuer.close());
  return issuer;
}
function dir(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

describe('StaticIssuer, file source', () => {
  it('issues the trimmed file value with version = fingerprint and expiry = now + min(ttl, maxTtl)', async () => {
    const file = join(dir(), 'openai');
    writeFileSync(file, 'sk-first-secret\n');
    const issuer = make({ source: { file }, ttlMs: 900_000, credential: 'openai' });
    const req = request({ maxTtlMs: 3_600_000 });
    expect(await issuer.issue(req)).toEqual({ value: 'sk-first-secret', version: fingerprint('sk-first-secret'), issuedAtMs: req.nowMs, expiresAtMs: req.nowMs + 900_000 });
    const capped = request({ maxTtlMs: 60_000 });
    expect((await issuer.issue(capped)).expiresAtMs).toBe(capped.nowMs + 60_000);
  });

  it('a changed file is picked up by the watcher (onChange, no issue() needed) and by the next issue()', async () => {
    const d = dir();
    const file = join(d, 'secret');
    writeFileSync(file, 'v1-secret');
    const seen: Array<string | undefined> = [];
    const issuer = make({ source: { file }, ttlMs: 60_000, pollIntervalMs: 50, onChange: (v) => seen.push(v) });
    expect((await issuer.load()).version).toBe(fingerprint('v1-secret'));
    writeFileSync(file, 'v2-secret-longer');
    await until(() => seen.includes(fingerprint('v2-secret-longer')));
    const out = await issuer.issue(request());
    expect(out.value).toBe('v2-secret-longer');
    expect(out.version).toBe(fingerprint('v2-secret-longer'));
    expect(out.version).not.toBe(fingerprint('v1-secret'));
    expect(seen.some((v) => v && v.includes('secret'))).toBe(false); // fingerprints, never values
  });

  it('a Kubernetes-style ..data symlink swap is picked up', async () => {
    const d = dir();
    mkdirSync(join(d, '..2025_a'));
    writeFileSync(join(d, '..2025_a', 'token'), 'swap-one');
    symlinkSync('..2025_a', join(d, '..data'));
    symlinkSync(join('..data', 'token'), join(d, 'token'));
    const issuer = make({ source: { file: join(d, 'token') }, ttlMs: 60_000, pollIntervalMs: 50 });
    expect((await issuer.issue(request())).value).toBe('swap-one');
    mkdirSync(join(d, '..2025_b'));
    writeFileSync(join(d, '..2025_b', 'token'), 'swap-two');
    symlinkSync('..2025_b', join(d, '..data_tmp'));
    renameSync(join(d, '..data_tmp'), join(d, '..data'));
    await until(async () => (await issuer.issue(request())).value === 'swap-two');
  });

  it('missing or empty file → LEASH_ERR_ISSUER_SOURCE (fail closed), and recovery when it returns', async () => {
    const d = dir();
    const file = join(d, 'secret');
    const issuer = make({ source: { file }, ttlMs: 60_000, credential: 'openai' });
    let err = await rejection(issuer.issue(request()));
    expect(err).toBeInstanceOf(IssuerError);
    expect(err.code).toBe('LEASH_ERR_ISSUER_SOURCE');
    expect(err.message).toContain('does not exist');
    expect(err.message).toContain('"openai"');

    writeFileSync(file, '  \n');
    err = await rejection(issuer.issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_SOURCE');
    expect(err.message).toContain('empty');

    writeFileSync(file, 'back-again');
    expect((await issuer.issue(request())).value).toBe('back-again');
    rmSync(file);
    expect((await rejection(issuer.issue(request()))).code).toBe('LEASH_ERR_ISSUER_SOURCE');
  });

  it('a value with control characters is refused without being echoed', async () => {
    const file = join(dir(), 'secret');
    writeFileSync(file, 'abc\r\nX-Injected: yes');
    const err = await rejection(make({ source: { file }, ttlMs: 60_000 }).issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_SOURCE');
    expect(err.message).not.toContain('Injected');
  });
});

describe('StaticIssuer, env source', () => {
  it('reads the injected env map, never process.env', async () => {
    process.env.LEASH_TEST_STATIC_ONLY_IN_PROCESS = 'from-process-env';
    try {
      const issuer = make({ source: { env: 'API_KEY' }, env: { API_KEY: ' sk-env-value ' }, ttlMs: 120_000 });
      const out = await issuer.issue(request());
      expect(out.value).toBe('sk-env-value');
      expect(out.version).toBe(fingerprint('sk-env-value'));
      const other = make({ source: { env: 'LEASH_TEST_STATIC_ONLY_IN_PROCESS' }, env: {}, ttlMs: 120_000 });
      const err = await rejection(other.issue(request()));
      expect(err.code).toBe('LEASH_ERR_ISSUER_SOURCE');
      expect(err.message).toContain('LEASH_TEST_STATIC_ONLY_IN_PROCESS is not set');
    } finally {
      delete process.env.LEASH_TEST_STATIC_ONLY_IN_PROCESS;
    }
  });

  it('a TTL under one second is a config error; issue after close is refused', async () => {
    expect(() => new StaticIssuer({ source: { env: 'X' }, ttlMs: 0 })).toThrow(IssuerError);
    const issuer = new StaticIssuer({ source: { env: 'X' }, env: { X: 'y' }, ttlMs: 1000 });
    await issuer.close();
    expect((await rejection(issuer.issue(request()))).code).toBe('LEASH_ERR_ISSUER_CLOSED');
  });
});
