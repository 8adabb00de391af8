import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MAX_PIPELINED } from '../../src/sidecar/proxy/server.js';
import { heldRoute } from '../helpers/held-route.js';
import { parseResponses, sleep } from '../helpers/security-net.js';

/**
 * Requests pipelined behind one not yet answered, on a connection the agent then closes.
 * Node parses and hands leash every pipelined request at once, and queues their responses
 * behind the first; a queued response never gets the connection's socket, so its 'close'
 * never fires once the agent is gone. leash forwarded each such request at once (with the
 * credential, in parallel: one connection could put any number of requests in flight) and
 * then never finished it: the upstream received them but no `request` audit line, usage
 * summary, metric or anomaly check ever saw them, and each left the in-flight count up for
 * good, so every later shutdown waited its whole grace period.
 *
 * A pipelined request is now taken up when its turn comes (its response gets the socket):
 * nothing is forwarded for an agent that left before then, and every request that reaches
 * the upstream is reported.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-pipelined-gone-4b1e9a7c2d6f3085';
const DEPTH = 6;

// Slower than the agent stays: its connection is gone before the first answer is in.
const held = heldRoute(SECRET, (url) => (/^\/v1\/(c\d|stop)/.test(url) ? 150 : 0));

const REQUESTS: Record<string, (path: string) => string> = {
  GET: (p) => `GET ${p} HTTP/1.1\r\nhost: leash\r\n\r\n`,
  DELETE: (p) => `DELETE ${p} HTTP/1.1\r\nhost: leash\r\n\r\n`,
  'POST content-length': (p) => `POST ${p} HTTP/1.1\r\nhost: leash\r\ncontent-length: 2\r\n\r\n{}`,
  'POST chunked': (p) => `POST ${p} HTTP/1.1\r\nhost: leash\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`,
};

/** Requests logged by leash (the `request` audit line) for paths under `prefix`. */
const logged = (prefix: string): string[] =>
  held.leash.logs
    .events('request')
    .map((e) => String(e.path))
    .filter((p) => p.startsWith(prefix));
const received = (prefix: string): string[] => held.up.seen.map((s) => s.url).filter((u) => u.startsWith(prefix));

describe('pipelined requests on a connection the agent closes', () => {
  let n = 0;
  for (const pool of ['free', 'busy'] as const) {
    for (const [name, request] of Object.entries(REQUESTS)) {
      it(`${name}, pool ${pool}: nothing goes upstream unreported, and nothing after the agent left`, async () => {
        const prefix = `/v1/c${n++}/`;
        const hold: Socket[] = [];
        if (pool === 'busy') {
          // Both of the route's sockets held by answers under way (an agent's own streams).
          hold.push(...(await held.holdSockets()));
          await sleep(100);
        }
        const agent = await held.open();
        agent.write(Array.from({ length: DEPTH }, (_, i) => request(`/r${prefix}${i}`)).join(''));
        await sleep(40);
        agent.destroy();
        if (pool === 'busy') {
          for (const h of held.holds.splice(0)) h();
          for (const s of hold) s.destroy();
        }
        await sleep(600);
        // At most the first (it was under way when the agent left); none of those behind it.
        expect(received(prefix).length).toBeLessThanOrEqual(1);
        // Whatever reached the upstream is reported.
        for (let i = 0; i < 50 && logged(prefix).length < received(prefix).length; i++) await sleep(20);
        expect(logged(prefix).sort()).toEqual(expect.arrayContaining(received(prefix).map((u) => u).sort()));
      });
    }
  }

  it('pipelined requests on a connection that stays are all answered, in order, and reported', async () => {
    const agent = await held.open();
    let got = '';
    agent.on('data', (d: Buffer) => (got += d.toString('latin1')));
    agent.write(Array.from({ length: DEPTH }, (_, i) => REQUESTS.GET!(`/r/v1/live/${i}`)).join(''));
    for (let i = 0; i < 300 && parseResponses(got).length < DEPTH; i++) await sleep(10);
    expect(parseResponses(got).map((r) => r.status)).toEqual(Array(DEPTH).fill(200));
    expect(received('/v1/live/')).toEqual(Array.from({ length: DEPTH }, (_, i) => `/v1/live/${i}`));
    for (let i = 0; i < 50 && logged('/v1/live/').length < DEPTH; i++) await sleep(20);
    expect(logged('/v1/live/')).toHaveLength(DEPTH);
    agent.destroy();
  });

  // Node parses pipelined requests without a bound while the answer ahead has not started
  // (20,000 on one connection: +44 MB of heap); leash holds at most MAX_PIPELINED waiting.
  for (const [name, request] of Object.entries(REQUESTS)) {
    for (const depth of [MAX_PIPELINED, MAX_PIPELINED + 1, 2_000]) {
      const over = depth > MAX_PIPELINED;
      it(`${name}: ${depth} pipelined behind an answer under way ${over ? 'close the connection' : 'are all answered'}`, async () => {
        const prefix = `/v1/d${name.length}x${depth}/`;
        const agent = await held.open();
        let got = '';
        let closed = false;
        agent.on('data', (d: Buffer) => (got += d.toString('latin1')));
        agent.on('close', () => (closed = true));
        agent.write(`GET /r/v1/hold HTTP/1.1\r\nhost: leash\r\n\r\n${Array.from({ length: depth }, (_, i) => request(`/r${prefix}${i}`)).join('')}`);
        await sleep(300);
        for (const h of held.holds.splice(0)) h();
        for (let i = 0; i < 300 && !closed && parseResponses(got).length < depth + 1; i++) await sleep(10);
        if (over) {
          expect(closed).toBe(true);
          expect(received(prefix)).toEqual([]);
        } else {
          expect(parseResponses(got).map((r) => r.status)).toEqual(Array(depth + 1).fill(200));
          expect(received(prefix)).toHaveLength(depth);
        }
        agent.destroy();
      });
    }
  }

  it('a sidecar with such connections behind it stops without waiting out its grace', async () => {
    const agent = await held.open();
    agent.write(Array.from({ length: DEPTH }, (_, i) => REQUESTS.GET!(`/r/v1/stop/${i}`)).join(''));
    await sleep(40);
    agent.destroy();
    await sleep(600);
    const started = performance.now();
    await held.leash.stop();
    // shutdown.grace is 2s in the harness; nothing is in flight any more.
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
