import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * ProxyServer.close(graceMs): requests in flight finish (each of them, not only the first
 * to end), close() resolves as soon as the last one has, and whatever leash answers itself
 * meanwhile closes its connection.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-shutdown-test-credential-61f0a2d4';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-shutdown', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-shutdown' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp() {
  const held: ServerResponse[] = [];
  const upstream = await stand.upstream((_req, res) => void held.push(res));
  const route = routeFor(upstream.url, new HandsOutAnything(cred()));
  const { outcomes, port, proxy } = await stand.start(route);
  return { held, outcomes, port, proxy };
}

describe('closing the proxy', () => {
  it('lets every request in flight finish, and resolves once the last one has, well before the grace period', async () => {
    const { held, outcomes, port, proxy } = await setUp();
    const a = await stand.open(port);
    const b = await stand.open(port);
    a.sock.write('GET /search/a HTTP/1.1\r\nhost: leash\r\n\r\n');
    b.sock.write('GET /search/b HTTP/1.1\r\nhost: leash\r\n\r\n');
    await waitFor(() => held.length === 2);
    let closed = false;
    const t0 = performance.now();
    const closing = proxy.close(10_000).then(() => (closed = true));
    held[0]!.end('first');
    await waitFor(() => outcomes.length === 1);
    await sleep(100);
    expect(closed).toBe(false);
    held[1]!.end('second');
    await closing;
    await waitFor(() => /second$/.test(b.received()));
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(outcomes.map((o) => o.status).sort()).toEqual([200, 200]);
    expect(a.received()).toMatch(/^HTTP\/1\.1 200 [\s\S]*first$/);
    expect(b.received()).toMatch(/^HTTP\/1\.1 200 [\s\S]*second$/);
  });

  it('closes the connection of a request it refuses meanwhile', async () => {
    const { held, outcomes, port, proxy } = await setUp();
    const a = await stand.open(port);
    // Pipelined behind a request in flight: taken up after close() began.
    a.sock.write('GET /search/a HTTP/1.1\r\nhost: leash\r\n\r\nGET /nowhere/x HTTP/1.1\r\nhost: leash\r\n\r\n');
    await waitFor(() => held.length === 1);
    const closing = proxy.close(10_000);
    held[0]!.end('first');
    await waitFor(() => outcomes.length === 2);
    await a.closed;
    await closing;
    const answers = a.received().split(/(?=HTTP\/1\.1 )/);
    expect(answers).toHaveLength(2);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 404 /);
    expect(answers[1]!.toLowerCase()).toContain('connection: close');
  });
});
