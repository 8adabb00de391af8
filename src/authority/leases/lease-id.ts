import { randomBytes } from 'node:crypto';

/**
 * A new lease id: 16 random bytes in base64url (22 characters, [A-Za-z0-9_-]).
 * About 1 in 64 such strings starts with '-', and a command-line argument that starts with
 * '-' reads as an option (`leash revoke --lease -xPs…` was refused as ambiguous), so those
 * draws are discarded and drawn again. Leaving out one of 64 first characters costs
 * 0.02 bits of the 128: ids stay unguessable, and the format (and the authority's
 * LEASE_ID check) is unchanged.
 */
export function newLeaseId(random: (n: number) => Buffer = randomBytes): string {
  for (;;) {
    const id = random(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}
