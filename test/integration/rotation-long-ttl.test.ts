import { describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { stopAfterEach } from '../helpers/teardown.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * `setTimeout` takes at most 2^31−1 ms (~24.8 days) and fires after 1 ms for anything
 * longer: a lease or identity of ~62 days or more (half of it past the limit), which the
 * config accepts, was refreshed in a tight loop (860 leases in 3 s; 138 renewals, each a
 * new key and certificate). Refreshes now wait in steps.
 */
const started = stopAfterEach();
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: RunningSidecar | undefined;

async function start(authorityConfig: Record<string, unknown>): Promise<void> {
  authority = await startAuthority(
    { policies: [{ identities: ['join:agent-*'], credentials: ['api'], maxTtl: '90d' }], limits: { leases: { perMinute: 0 } }, ...authorityConfig },
    { env: { K: 'static-key-value-0123456789' } },
  );
  started(authority, (a) => a!.stop());
  upstream = await startUpstream((_q, r) => r.end('ok'));
  started(upstream, (u) => u!.close());
  const token = await authority.token('agent-1');
  sidecar = await startSidecar(
    {
      authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
      routes: { api: { upstream: upstream.url, credential: 'api', inject: { header: 'x-key', format: '{{credential}}' }, allow: ['GET /**'] } },
    },
    { authorityCa: authority.caPem, joinToken: () => token },
  );
  started(sidecar, (x) => x!.stop());
  await waitFor(() => authority!.logs.events('lease.issued').length > 0, { timeoutMs: 5_000, intervalMs: 20, message: 'first lease' });
}

describe('leases and identities longer than setTimeout can wait', () => {
  it('a 90-day lease is leased once', async () => {
    await start({ credentials: { api: { kind: 'static', source: { env: 'K' }, ttl: '90d' } } });
    await sleep(1_500);
    expect(authority!.logs.events('lease.issued')).toHaveLength(1);
  });

  it('a 90-day identity is renewed not at all in the first seconds', async () => {
    await start({ identity: { ttl: '90d' }, credentials: { api: { kind: 'static', source: { env: 'K' }, ttl: '15m' } } });
    await sleep(1_500);
    expect(authority!.logs.events('instance.renewed')).toHaveLength(0);
    expect(authority!.logs.events('lease.issued')).toHaveLength(1);
  });
});
