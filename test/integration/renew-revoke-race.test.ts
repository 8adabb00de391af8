import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/authority/leases/memory.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { api, bootstrap } from '../helpers/replicas.js';
import { waitFor } from '../helpers/wait.js';

/**
 * An instance revoked while its renewal (or its bootstrap) is past the revocation check:
 * the certificate being signed must not get out. The check's answer is computed at once
 * and delivered when the test opens a gate, as a Redis reply arrives late under load; the
 * revocation lands in between. Before, the renewal was answered with a fresh certificate
 * that could outlive the revocation mark (one identity TTL from the revoker's clock), and
 * renew again, and lease again, once the mark had ended.
 */
class SlowAnswerStore extends MemoryStore {
  gate: Promise<void> | undefined;
  entered = 0;
  override async isIdentityRevoked(identity: string): Promise<boolean> {
    const answer = await super.isIdentityRevoked(identity);
    const gate = this.gate;
    this.gate = undefined;
    if (gate) {
      this.entered++;
      await gate;
    }
    return answer;
  }
}

const SEARCH = {
  identity: { ttl: '1h' },
  credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
};
let authority: TestAuthority | undefined;
afterEach(async () => {
  await authority?.stop();
  authority = undefined;
});

describe('an instance revoked while its identity call is in flight', () => {
  it('a renewal past its check is refused 401, and the revoked instance cannot renew or lease afterwards', async () => {
    const store = new SlowAnswerStore();
    authority = await startAuthority(SEARCH, { store });
    const one = await bootstrap(authority.url, authority.caPem, await authority.token('agent-1'));
    expect(one.status).toBe(200);
    let open!: () => void;
    store.gate = new Promise<void>((r) => (open = r));
    const csr = createCsr(createIdentityKey(), 'leash-test');
    const renewal = api<{ certificate?: string; error?: { message: string } }>(authority.url, authority.caPem, 'POST', '/v1/identity/renew', { identity: one.client, body: { csr } });
    await waitFor(() => store.entered === 1, { timeoutMs: 3_000, intervalMs: 5 });
    await authority.running.authority.revoke('test', 'instance', 'spiffe://leash.local/join/agent-1', 'compromised');
    open();
    const answer = await renewal;
    expect(answer.status).toBe(401);
    expect(answer.body.certificate).toBeUndefined();
    expect(answer.body.error?.message).toContain('identity revoked');
    const again = await api(authority.url, authority.caPem, 'POST', '/v1/identity/renew', { identity: one.client, body: { csr } });
    expect(again.status).toBe(401);
    const lease = await api(authority.url, authority.caPem, 'POST', '/v1/leases', { identity: one.client, body: { credential: 'search' } });
    expect(lease.status).toBe(401);
    expect(authority.logs.events('instance.renewed')).toHaveLength(0);
  });

  it('a bootstrap past its check is refused 401 and its identity is not announced', async () => {
    const store = new SlowAnswerStore();
    authority = await startAuthority(SEARCH, { store });
    const token = await authority.token('agent-2');
    let open!: () => void;
    store.gate = new Promise<void>((r) => (open = r));
    const boot = bootstrap(authority.url, authority.caPem, token);
    await waitFor(() => store.entered === 1, { timeoutMs: 3_000, intervalMs: 5 });
    await authority.running.authority.revoke('test', 'instance', 'spiffe://leash.local/join/agent-2', 'compromised');
    open();
    const answer = await boot;
    expect(answer.status).toBe(401);
    expect(authority.logs.events('instance.bootstrapped')).toHaveLength(0);
  });
});
