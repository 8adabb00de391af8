import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { rawRequest } from '../helpers/proxy-util.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What the proxy reports about a request (the outcome behind the `request` audit line and
 * usage) and what the agent is told when its credential is revoked while the upstream has
 * not answered yet: the path is the agent's (under the route), never the upstream path it
 * was rewritten to; a request refused before any route was found still has its path; and
 * the revoked request's 503 names its route.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-outcome-fields-test-credential-8d3a';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-fields', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-fields' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp(hold = false) {
  const seen: string[] = [];
  const held: ServerResponse[] = [];
  const upstream = await stand.upstream((req, res) => {
    seen.push(req.url!);
    if (hold) held.push(res);
    else res.end('{"ok":true}');
  });
  // An upstream with a base path: the upstream path differs from the agent's.
  const route = routeFor(`${upstream.url}/base`, new HandsOutAnything(cred()));
  const { outcomes, port, proxy } = await stand.start(route);
  return { seen, held, outcomes, port, proxy };
}

describe('request outcomes', () => {
  it("record the agent's path, not the upstream path it was sent to", async () => {
    const { seen, outcomes, port } = await setUp();
    const r = await rawRequest(`http://127.0.0.1:${port}/search/v1/items?page=2`);
    expect(r.status).toBe(200);
    expect(seen).toEqual(['/base/v1/items?page=2']);
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.route).toBe('search');
    expect(outcomes[0]!.path).toBe('/v1/items');
  });

  it('of a request refused before a route was found still record its path', async () => {
    const { seen, outcomes, port } = await setUp();
    const r = await rawRequest(`http://127.0.0.1:${port}/nowhere/x`);
    expect(r.status).toBe(404);
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.route).toBeUndefined();
    expect(outcomes[0]!.path).toBe('/nowhere/x');
    expect(seen).toEqual([]);
  });
});

describe('a request whose credential is revoked before the upstream answered', () => {
  it('gets 503 leash_credential_unavailable naming its route', async () => {
    const { held, outcomes, port, proxy } = await setUp(true);
    const pending = rawRequest(`http://127.0.0.1:${port}/search/v1/slow`);
    await waitFor(() => held.length === 1);
    expect(proxy.cutOpen((r, lease) => r === 'search' && lease === 'L-fields')).toBe(1);
    const r = await pending;
    expect(r.status).toBe(503);
    const body = JSON.parse(r.body.toString('utf8')) as { error: { type: string; route: string | null } };
    expect(body.error.type).toBe('leash_credential_unavailable');
    expect(body.error.route).toBe('search');
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(503);
  });
});
