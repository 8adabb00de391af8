import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { heldRoute } from '../helpers/held-route.js';
import { rawRequest, sleep } from '../helpers/security-net.js';
import { waitFor } from '../helpers/wait.js';

/**
 * queued-gone.test.ts with several requests in the route's queue at once: the one whose
 * agent goes away is in the middle of the queue, not alone in it. Only that request leaves
 * the queue (not the first, not the last, not the whole queue), and the live requests
 * around it are still sent, in order, once the route's sockets free up.
 */
// Made up for this test (no vendor issues keys of this shape).
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-queued-middle-5d1a7c3e9f2b8046';

const held = heldRoute(SECRET);

describe('a request in the middle of the route queue whose agent goes away', () => {
  it('leaves the queue alone; the live requests before and after it are still sent', async () => {
    const hold = await held.holdSockets();
    for (let i = 0; i < 100 && held.holds.length < 2; i++) await sleep(10);
    expect(held.holds).toHaveLength(2);

    const get = (name: string) => `GET /r/v1/mid/${name} HTTP/1.1\r\nhost: leash\r\n\r\n`;
    // Each request is in the queue before the next is sent: the queue's order is known.
    const queued = (n: number) => waitFor(() => held.waiting() === n, { timeoutMs: 2_000, intervalMs: 5, message: () => `${n} queued (${held.waiting()})` });
    const first = rawRequest(held.port, get('first'), { timeoutMs: 5_000, expectResponses: 1 });
    await queued(1);
    const gone: Socket[] = [];
    for (const name of ['gone1', 'gone2']) {
      const s = await held.open();
      s.write(get(name));
      gone.push(s);
      await queued(gone.length + 1);
    }
    const last = rawRequest(held.port, get('last'), { timeoutMs: 5_000, expectResponses: 1 });
    await queued(4);

    // Queue: first, gone1, gone2, last. The agents of the two in the middle go away.
    for (const s of gone) s.destroy();
    await sleep(200);
    expect(held.waiting()).toBe(2);

    for (const h of held.holds.splice(0)) h();
    for (const s of hold) s.destroy();
    expect((await first).responses[0]?.status).toBe(200);
    expect((await last).responses[0]?.status).toBe(200);
    expect(held.up.seen.map((s) => s.url).filter((u) => u.startsWith('/v1/mid/'))).toEqual(['/v1/mid/first', '/v1/mid/last']);
  });
});
