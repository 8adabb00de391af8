import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/authority/leases/memory.js';
import { ADMIN_TOKEN, startAuthority, type TestAuthority } from '../helpers/authority.js';
import { CLI, writeTemp } from '../helpers/spawn.js';

/**
 * `leash revoke --lease ID` with an id that starts with '-' (base64url lease ids did, about
 * 1 in 64, which made revoke-authority-cli fail now and then). Deterministic: the leases
 * are put in the authority's store with such ids, and the built CLI revokes them.
 */
const run = promisify(execFile);
let authority: TestAuthority;
let env: Record<string, string>;
const store = new MemoryStore();

beforeAll(async () => {
  authority = await startAuthority(
    {
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    },
    { store },
  );
  env = { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: authority.url, LEASH_CA_FILE: writeTemp('ca.pem', authority.caPem), LEASH_ADMIN_TOKEN: ADMIN_TOKEN };
});
afterAll(async () => {
  await authority?.stop();
});

const leash = (...args: string[]) =>
  run(process.execPath, [CLI, ...args], { env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

async function putLease(id: string): Promise<void> {
  const now = Date.now();
  await store.putLease({ id, instance: 'spiffe://leash.local/join/agent-1', credential: 'search', fingerprint: 'sha256:0123456789ab', version: '1', issuedAtMs: now, expiresAtMs: now + 300_000 });
}

describe('leash revoke --lease with an id that starts with "-"', () => {
  it('--lease -ID revokes it', async () => {
    const id = '-xPsQ2yZk0aBcDeFgHiJkL';
    await putLease(id);
    const r = await leash('revoke', '--lease', id, '--reason', 'dash test');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^revoked lease ${id} \\(\\d+-\\d+\\)\\n$`));
    expect(await store.getLease(id)).toBeUndefined();
  });
  it('--lease=-ID revokes it', async () => {
    const id = '--yQ3zA1bCdEfGhIjKlMnO';
    await putLease(id);
    const r = await leash('revoke', `--lease=${id}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`revoked lease ${id} (`);
    expect(await store.getLease(id)).toBeUndefined();
  });
  it('a forgotten value (--lease --reason x) is a usage error that says how to pass a dash value', async () => {
    const r = await leash('revoke', '--lease', '--reason', 'x');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--lease=VALUE');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
