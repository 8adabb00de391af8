import { describe, expect, it } from 'vitest';
import { heldRoute } from '../helpers/held-route.js';
import { rawRequest, sleep } from '../helpers/security-net.js';

/**
 * A request waiting for one of its route's `maxSockets` upstream sockets, whose agent goes
 * away. Node's Agent keeps a queued request, destroyed or not, until a socket frees up, with
 * everything it holds (its head, the agent's request and response: ~22 KB with an 8 KB
 * header); leash could not reach it (http-proxy hands the request out once it has a
 * socket), so it stayed. While the route's sockets were busy (streams, slow generations)
 * an agent could open a connection, send a request and close it, again and again (the
 * listener's `maxConnections` counts open connections only): 3,000 of them grew the heap
 * by 66 MB, without bound, and once a socket freed every one of them was taken up in turn
 * before a live request behind them. A queued request now leaves the queue when its agent
 * goes away.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-queued-gone-8c3f1e5a9b2d7046';
const AGENTS = 40;

const held = heldRoute(SECRET);

const PAD = `x-pad: ${'a'.repeat(2_000)}\r\n`;
const REQUESTS: Record<string, (path: string) => string> = {
  GET: (p) => `GET ${p} HTTP/1.1\r\nhost: leash\r\n${PAD}\r\n`,
  DELETE: (p) => `DELETE ${p} HTTP/1.1\r\nhost: leash\r\n${PAD}\r\n`,
  'POST content-length': (p) => `POST ${p} HTTP/1.1\r\nhost: leash\r\n${PAD}content-length: 2\r\n\r\n{}`,
  'POST chunked': (p) => `POST ${p} HTTP/1.1\r\nhost: leash\r\n${PAD}transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
  'POST body still arriving': (p) => `POST ${p} HTTP/1.1\r\nhost: leash\r\n${PAD}content-length: 100\r\n\r\n{`,
};

describe('a request queued for an upstream socket whose agent goes away', () => {
  let n = 0;
  for (const [name, request] of Object.entries(REQUESTS)) {
    it(`${name}: leaves the route's queue at once; a live request is not kept behind them`, async () => {
      const prefix = `/v1/q${n++}/`;
      // Both of the route's sockets busy with answers under way.
      const hold = await held.holdSockets();
      for (let i = 0; i < 100 && held.holds.length < 2; i++) await sleep(10);
      for (let i = 0; i < AGENTS; i++) {
        const agent = await held.open();
        agent.write(request(`/r${prefix}${i}`));
        await sleep(2);
        agent.destroy();
      }
      await sleep(200);
      expect(held.waiting()).toBe(0);
      // A live request behind them, then the sockets free up.
      const live = rawRequest(held.port, `GET /r${prefix}live HTTP/1.1\r\nhost: leash\r\n\r\n`, { timeoutMs: 5_000, expectResponses: 1 });
      await sleep(50);
      for (const h of held.holds.splice(0)) h();
      for (const s of hold) s.destroy();
      expect((await live).responses[0]?.status).toBe(200);
      // None of the gone agents' requests reached the upstream.
      expect(held.up.seen.map((s) => s.url).filter((u) => u.startsWith(prefix))).toEqual([`${prefix}live`]);
    });
  }
});
