import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { MAX_PIPELINED } from '../../src/sidecar/proxy/server.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { parseResponses } from '../helpers/security-net.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * An agent connection over its life (server.ts handle): the bound on pipelined requests is
 * per burst, not per connection (a long-lived connection that pipelines a little, again
 * and again, is never cut); and the status recorded when the agent goes away is the
 * upstream's once its head was relayed, 499 (nginx's) only when it left before that.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-connection-lifecycle-test-5f17c0be';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-life', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-life' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp(handler: (url: string, res: ServerResponse) => void) {
  const seen: string[] = [];
  const upstream = await stand.upstream((req, res) => {
    seen.push(req.url!);
    handler(req.url!, res);
  });
  const route = routeFor(upstream.url, new HandsOutAnything(cred()));
  const { outcomes, port, logs: sink } = await stand.start(route, { level: 'debug' });
  return { seen, outcomes, port, sink };
}

describe('an agent connection', () => {
  it('that pipelines a few requests again and again is served for as long as it lasts', async () => {
    const { seen, port } = await setUp((_url, res) => res.end('ok'));
    const agent = await stand.open(port);
    const rounds = MAX_PIPELINED; // far more pipelined requests in all than the bound on one burst
    for (let round = 0; round < rounds; round++) {
      agent.sock.write(Array.from({ length: 3 }, (_, i) => `GET /search/r${round}/${i} HTTP/1.1\r\nhost: leash\r\n\r\n`).join(''));
      await waitFor(() => parseResponses(agent.received()).length === 3 * (round + 1) || agent.isClosed(), { timeoutMs: 3_000 });
      expect(agent.isClosed()).toBe(false);
    }
    expect(parseResponses(agent.received()).map((r) => r.status)).toEqual(Array(3 * rounds).fill(200));
    expect(seen).toHaveLength(3 * rounds);
  });

  it('that pipelines more than MAX_PIPELINED requests behind one under way is closed, and that is logged at debug', async () => {
    const held: ServerResponse[] = [];
    const { seen, port, sink } = await setUp((_url, res) => void held.push(res));
    const agent = await stand.open(port);
    agent.sock.write(Array.from({ length: MAX_PIPELINED + 2 }, (_, i) => `GET /search/p${i} HTTP/1.1\r\nhost: leash\r\n\r\n`).join(''));
    await waitFor(() => agent.isClosed(), { timeoutMs: 2_000, message: 'leash to close the connection' });
    await sleep(100);
    // None of those queued behind the first went upstream (the first was cut with the connection).
    expect(seen.filter((u) => u !== '/p0')).toEqual([]);
    const logged = sink.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'agent connection closed: too many pipelined requests');
    expect(logged).toHaveLength(1);
    expect(logged[0]!.level).toBe('debug');
    expect(logged[0]!.max).toBe(MAX_PIPELINED);
    for (const res of held) res.end();
  });

  it("that goes away in the middle of a relayed answer is recorded with the upstream's status", async () => {
    const { outcomes, port } = await setUp((_url, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
    });
    const agent = await stand.open(port);
    agent.sock.write('GET /search/stream HTTP/1.1\r\nhost: leash\r\n\r\n');
    await waitFor(() => agent.received().includes('data: first'));
    agent.sock.destroy();
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(200);
  });

  it('that goes away before the upstream answered is recorded 499', async () => {
    const { seen, outcomes, port } = await setUp(() => undefined);
    const agent = await stand.open(port);
    agent.sock.write('GET /search/slow HTTP/1.1\r\nhost: leash\r\n\r\n');
    await waitFor(() => seen.length === 1);
    agent.sock.destroy();
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(499);
  });
});
