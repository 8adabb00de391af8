import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/pki/ca.js';
import { AuthorityCallError } from '../../src/core/errors.js';
import { systemClock } from '../../src/core/clock.js';
import type { NodeAttestor } from '../../src/core/attestation.js';
import { AuthorityClient } from '../../src/sidecar/credentials/authority-client.js';
import { IdentityManager, type IdentityEvent } from '../../src/sidecar/credentials/identity.js';
import { joinTokenAttestor } from '../../src/sidecar/credentials/attestors/join-token.js';
import { sendJson, startAuthorityStandIn } from '../helpers/authority-stand-in.js';
import type { Upstream } from '../helpers/harness.js';

/**
 * When the sidecar's identity ends: an authority refusal (a status) of a held identity
 * drops it at once, so it is never used again; a refusal of our own (no evidence to hand,
 * no status) changes nothing held.
 */

const HOUR = 3_600_000;
const ID = 'spiffe://leash.local/join/a';

let ca: CertificateAuthority;
let server: Upstream;
let renewStatus = 403;
let client: AuthorityClient;
let manager: IdentityManager;

beforeAll(async () => {
  ({ ca, server } = await startAuthorityStandIn((req, res, body) => {
    if (req.url === '/v1/bootstrap') {
      const { csr } = JSON.parse(body) as { csr: string };
      const issued = ca.signCsr(csr, ID, HOUR);
      return sendJson(res, 200, JSON.stringify({ identity: ID, certificate: issued.certificate, ttlSeconds: 3600 }));
    }
    sendJson(res, renewStatus, JSON.stringify({ error: { code: 'LEASH_ERR_REVOKED', message: 'identity revoked' } }));
  }));
});
afterAll(async () => {
  await server?.close();
});
afterEach(async () => {
  await manager?.close();
  client?.close();
});

function start(attestor: NodeAttestor): IdentityEvent[] {
  const events: IdentityEvent[] = [];
  client = new AuthorityClient(new URL(server.url), ca.caPem, 1_000);
  manager = new IdentityManager(client, attestor, systemClock, (e) => events.push(e));
  return events;
}

describe('identity refusal', () => {
  it('a held identity refused by the authority is lost at once', async () => {
    renewStatus = 403;
    const events = start(joinTokenAttestor(() => 'leash_jt_x'));
    await manager.start();
    expect(manager.identity).toBe(ID);
    await manager.start(); // join token: renews over mTLS, which is refused
    expect(manager.identity).toBeUndefined();
    expect(manager.usable()).toBe(false);
    expect(events.map((e) => e.kind)).toEqual(['bootstrapped', 'lost', 'failed']);
    expect(events[1]).toEqual({ kind: 'lost', identity: ID, reason: 'refused by the authority' });
  });

  it('a retryable failure keeps the held identity', async () => {
    renewStatus = 503;
    const events = start(joinTokenAttestor(() => 'leash_jt_x'));
    await manager.start();
    await manager.start();
    expect(manager.identity).toBe(ID);
    expect(events.map((e) => e.kind)).toEqual(['bootstrapped', 'failed']);
  });

  it('missing evidence for a re-attestation is a refusal without status: the held identity stays', async () => {
    let reads = 0;
    const inner = joinTokenAttestor(() => (reads++ === 0 ? 'leash_jt_x' : undefined));
    const events = start({ ...inner, reattest: true, evidence: () => inner.evidence() });
    await manager.start();
    await manager.start();
    expect(manager.identity).toBe(ID);
    expect(events.map((e) => e.kind)).toEqual(['bootstrapped', 'failed']);
    const err = (events[1] as { error: Error }).error;
    expect(err).toBeInstanceOf(AuthorityCallError);
    expect((err as AuthorityCallError).kind).toBe('refused');
    expect(err.message).toBe('no join token to bootstrap with');
  });
});
