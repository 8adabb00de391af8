import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';

/**
 * Which leases a route gives back to the authority, and when (DESIGN §6): a rotation keeps
 * one predecessor for requests in flight and releases the one that predecessor displaced; a
 * drop (revocation) releases the predecessor; close releases whatever is still held. The
 * integration tests cannot pin this down — with short leases the authority often expires a
 * displaced predecessor before its release arrives — so it is decided here, with no clock.
 */
const clock: Clock = { monotonicMs: () => performance.now(), wallMs: () => Date.now() };

function leasing(): { source: LeaseSource; released: string[] } {
  let n = 0;
  const released: string[] = [];
  const source: LeaseSource = {
    lease: async () => {
      n++;
      const value = `release-test-value-${n}`; // made up: no real key
      const now = Date.now();
      return { lease: `L${n}`, credential: 'api', value, fingerprint: fingerprint(value), version: '1', issuedAt: new Date(now).toISOString(), expiresAt: new Date(now + 3_600_000).toISOString(), ttlSeconds: 3_600 } satisfies LeaseResponse;
    },
    release: async (id) => {
      released.push(id);
    },
  };
  return { source, released };
}

describe('LeaseCredential: releases', () => {
  it('each rotation releases the lease its predecessor displaced; close releases the two still held', async () => {
    const { source, released } = leasing();
    const cred = new LeaseCredential('api', source, clock, () => undefined);
    await cred.start();
    await cred.refresh();
    expect(released).toEqual([]); // L1 is the predecessor of L2, kept for requests in flight
    expect(cred.leaseIds()).toEqual(['L2', 'L1']);
    await cred.refresh();
    expect(released).toEqual(['L1']);
    await cred.refresh();
    expect(released).toEqual(['L1', 'L2']);
    expect(cred.leaseIds()).toEqual(['L4', 'L3']);
    await cred.close();
    expect(released.sort()).toEqual(['L1', 'L2', 'L3', 'L4']);
    expect(cred.leaseIds()).toEqual([]);
  });

  it('a drop releases the predecessor at once; the dropped lease itself is released at close, once', async () => {
    const { source, released } = leasing();
    const cred = new LeaseCredential('api', source, clock, () => undefined);
    await cred.start();
    await cred.refresh();
    cred.drop('revoked (credential)');
    expect(released).toEqual(['L1']);
    await cred.close();
    expect(released).toEqual(['L1', 'L2']);
  });

  it('a revocation with re-lease releases the predecessor, and the next rotation the revoked lease', async () => {
    const { source, released } = leasing();
    const cred = new LeaseCredential('api', source, clock, () => undefined);
    await cred.start();
    await cred.refresh();
    await cred.revoke('revoked (lease)', true);
    expect(cred.current()?.lease).toBe('L3');
    expect(released).toEqual(['L1']);
    await cred.refresh();
    expect(released).toEqual(['L1', 'L2']);
    await cred.close();
    expect(released.sort()).toEqual(['L1', 'L2', 'L3', 'L4']);
  });
});
