import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';

/**
 * stillSendable: whether a credential a request took earlier (then waited for an upstream
 * socket with) may still leave. Not after a drop (revocation, refusal) — neither the lease
 * in use nor its predecessor, which a revocation may name as well — nor when its lease was
 * revoked while the route did not hold it; a rotation alone takes nothing away.
 */
const clock: Clock = { monotonicMs: () => performance.now(), wallMs: () => Date.now() };

function leasing(): { source: LeaseSource } {
  let n = 0;
  const source: LeaseSource = {
    lease: async () => {
      n++;
      const value = `sendable-test-value-${n}`;
      const now = Date.now();
      return { lease: `L${n}`, credential: 'api', value, fingerprint: fingerprint(value), version: '1', issuedAt: new Date(now).toISOString(), expiresAt: new Date(now + 3_600_000).toISOString(), ttlSeconds: 3_600 } satisfies LeaseResponse;
    },
    release: async () => undefined,
  };
  return { source };
}

describe('LeaseCredential.stillSendable', () => {
  it('after a rotation both leases may leave; after a drop neither may; a lease revoked while not held may not', async () => {
    const cred = new LeaseCredential('api', leasing().source, clock, () => undefined);
    await cred.start();
    const first = cred.current()!;
    await cred.refresh(first); // the upstream refused it: a new lease, the first kept as predecessor
    const second = cred.current()!;
    expect([first.lease, second.lease]).toEqual(['L1', 'L2']);
    const now = clock.monotonicMs();
    expect(cred.stillSendable(first, now)).toBe(true);
    expect(cred.stillSendable(second, now)).toBe(true);

    const older: HeldCredential = { ...first, lease: 'L0' };
    expect(cred.stillSendable(older, now)).toBe(true);
    cred.forbidLease('L0');
    expect(cred.stillSendable(older, now)).toBe(false);

    cred.drop('revoked (credential)');
    expect(cred.stillSendable(first, now)).toBe(false);
    expect(cred.stillSendable(second, now)).toBe(false);
    await cred.close();
  });
});
