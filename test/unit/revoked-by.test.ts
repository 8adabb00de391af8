import { describe, expect, it } from 'vitest';
import { revokedBy } from '../../src/authority/authority.js';
import type { LeaseRecord } from '../../src/core/protocol.js';

/**
 * A credential/all revocation takes back the leases issued up to its cutoff. Sidecars lease
 * again as soon as the revocation reaches them, often before the authority has listed the
 * leases to delete: a lease issued after the cutoff is one a sidecar just took and uses, and
 * deleting it left a live credential the authority no longer knew (`leash leases`,
 * `leash trace` blind to it; its release a 404) — seen in the fleet e2e under load.
 */
const lease = (id: string, issuedAtMs: number): LeaseRecord => ({
  id,
  instance: 'spiffe://leash.local/join/a',
  credential: 'llm',
  fingerprint: 'sha256:000000000000',
  version: '1',
  issuedAtMs,
  expiresAtMs: issuedAtMs + 60_000,
});

describe('revokedBy', () => {
  const cutoff = 1_800_000_000_000;
  const records = [lease('before', cutoff - 5_000), lease('at', cutoff), lease('after', cutoff + 1)];

  it('takes the leases issued up to the cutoff, not those leased after it', () => {
    expect(revokedBy(records, cutoff).map((r) => r.id)).toEqual(['before', 'at']);
  });

  it('takes every lease when the cutoff cannot be read (fail closed)', () => {
    expect(revokedBy(records, Number.NaN).map((r) => r.id)).toEqual(['before', 'at', 'after']);
  });
});
