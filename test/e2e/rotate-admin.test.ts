import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { AuthorityProc } from '../helpers/rotate-fleet.js';
import { writeTemp } from '../helpers/spawn.js';

/**
 * The admin token rotated on a running authority: its `{ file }` (a mounted Secret) first
 * holds the old and the new token, one per line (both accepted: the operators' tooling
 * moves over), then the new one only. No restart, so no window in which one replica takes
 * the old token and another the new one (a `leash revoke` during an incident refused).
 * Before: admin.token was read once at start; the new token was refused until a restart.
 */
const OLD = 'admin-token-old-0123456789abcdef';
const NEW = 'admin-token-new-fedcba9876543210';

let authority: AuthorityProc | undefined;

afterAll(async () => {
  for (const p of authority?.all ?? []) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all((authority?.all ?? []).map((p) => p.exit));
});

describe('rotating the admin token', () => {
  it('accepts every token the file holds now, without a restart', { timeout: 30_000 }, async () => {
    const ca = CertificateAuthority.generate('leash.local');
    const caFile = writeTemp('ca.pem', ca.caPem);
    const tokenFile = writeTemp('admin-token', `${OLD}\n`);
    authority = new AuthorityProc({});
    await authority.start({
      hostnames: ['127.0.0.1'],
      ca: { certFile: caFile, keyFile: writeTemp('ca-key.pem', ca.exportPrivateKeyPem()) },
      admin: { token: { file: tokenFile } },
      credentials: { llm: { kind: 'static', source: { env: 'PATH' } } },
      policies: [{ identities: ['join:agent-*'], credentials: ['llm'] }],
    });
    const leases = (token: string): string => {
      try {
        return authority!.cli(['leases'], caFile, token);
      } catch (err) {
        return String((err as { stderr?: string }).stderr ?? err).trim();
      }
    };
    expect(leases(OLD)).toBe('(no active leases)');
    expect(leases(NEW)).toMatch(/401 LEASH_ERR_UNAUTHENTICATED.*admin token is wrong/);

    writeFileSync(tokenFile, `${OLD}\n${NEW}\n`); // the overlap
    expect(leases(NEW)).toBe('(no active leases)');
    expect(leases(OLD)).toBe('(no active leases)');

    writeFileSync(tokenFile, `${NEW}\n`); // the old one is gone
    expect(leases(OLD)).toMatch(/admin token is wrong/);
    expect(leases(NEW)).toBe('(no active leases)');

    writeFileSync(tokenFile, ''); // emptied (a swap caught half way): the tokens in use stay
    expect(leases(NEW)).toBe('(no active leases)');
    expect(leases(OLD)).toMatch(/admin token is wrong/);

    await authority.proc!.waitForJson((l) => l.msg === 'admin.token changed: the admin API accepts the token(s) it holds now' && l.tokens === 2, 1_000);
    const logs = authority.all.flatMap((p) => [...p.stdout, ...p.stderr]).join('\n');
    expect(logs).not.toContain(OLD);
    expect(logs).not.toContain(NEW);
  });
});
