import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import type { Upstream } from '../helpers/harness.js';
import {
  countEvents,
  sleep,
  startRotationSidecar,
  startStrictJwtUpstream,
  waitFor,
  type RotationSidecar,
  type UpstreamStats,
} from '../helpers/rotation-sidecar.js';

/**
 * DESIGN §6 "an upstream 401/403 triggers one coalesced refresh": twenty requests in flight
 * with the same credential all come back 401; the authority must see exactly one more
 * lease, and the requests after it carry the new token. The 401s arrive either all at
 * once or spread over 400 ms (so most arrive after the refresh has already finished).
 */
let authority: TestAuthority | undefined;
let upstream: (Upstream & { stats: UpstreamStats }) | undefined;
let leash: RotationSidecar | undefined;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
  await authority?.stop();
  leash = upstream = authority = undefined;
});

const CONCURRENT = 20;

describe('refresh after an upstream 401', () => {
  it.each([
    ['all at once', 0],
    ['spread over 400 ms', 20],
  ])('20 concurrent 401s (%s) cause exactly one extra lease', { timeout: 15_000 }, async (_label, spacingMs) => {
    authority = await startAuthority({
      trustDomain: 'leash.local',
      // Long enough that no scheduled rotation happens during the test.
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '10m' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
    });
    // Once armed with a token, the upstream holds requests carrying it until twenty have
    // arrived, then answers each 401 (`spacingMs` apart). Other tokens are verified as usual.
    let refuse: string | undefined;
    const held: Array<(status: number) => void> = [];
    upstream = await startStrictJwtUpstream({
      jwks: authority.running.keys.jwks(),
      audience: () => 'search-api',
      intercept: (token) => {
        if (token !== refuse) return undefined;
        return new Promise<number>((resolve) => {
          held.push(resolve);
          if (held.length === CONCURRENT) {
            refuse = undefined;
            held.forEach((answer, i) => setTimeout(() => answer(401), i * spacingMs));
          }
        });
      },
    });
    const token = await authority.token('agent-refresh');
    leash = await startRotationSidecar(
      {
        authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
        routes: {
          search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
        },
      },
      { authorityCa: authority.caPem, joinToken: () => token },
    );
    const url = `${leash.url}/search/v1/q`;
    expect((await fetch(url)).status).toBe(200);
    const stats = upstream.stats;
    const [first] = [...stats.tokens.keys()];
    expect(countEvents(authority.logs, 'lease.issued')).toBe(1);

    refuse = first;
    const statuses = await Promise.all(Array.from({ length: CONCURRENT }, async () => (await fetch(url)).status));
    // The upstream's 401 reaches the agent (leash does not replay requests).
    expect(statuses).toEqual(Array(CONCURRENT).fill(401));
    await waitFor(() => leash!.audit.of('credential.rotated').length > 0, 'the refresh', 3_000);
    // Leave room for any straggling refresh to show up at the authority before counting.
    await sleep(300);
    expect(countEvents(authority.logs, 'lease.issued')).toBe(2);
    expect(leash.audit.of('credential.rotated')).toHaveLength(1);

    // Later requests carry the new token and pass the strict upstream.
    for (let i = 0; i < 5; i++) expect((await fetch(url)).status).toBe(200);
    const tokens = [...stats.tokens.entries()];
    expect(tokens).toHaveLength(2);
    const [, second] = tokens[1]!;
    expect(second.fingerprint).toBe(leash.audit.of('credential.rotated')[0]!.fields.fingerprint);
    expect(second.count).toBe(5);
    expect(stats.tokens.get(first!)!.count).toBe(1 + CONCURRENT);
    const metrics = await (await fetch(`${leash.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`leash_upstream_auth_failures_total\\{route="search",status="401"\\} ${CONCURRENT}\\b`));
  });
});
