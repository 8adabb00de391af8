import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BadRequestError, DeniedError } from '../../src/core/errors.js';
import type { RequestContext } from '../../src/sidecar/proxy/passes.js';
import { readRequestBody, type BodyOutcome, type RequestBodyFilter } from '../../src/sidecar/proxy/request-body.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { contextOf, HandsOutAnything, routeFor } from '../helpers/passes.js';
import { waitFor } from '../helpers/wait.js';

/**
 * readRequestBody (src/sidecar/proxy/request-body.ts) on real requests: a real HTTP server
 * on port 0 hands each request it parses to the reader, and a raw socket plays the agent,
 * so a test decides exactly which bytes arrive, when, and whether the agent goes away.
 * The outcome is the reader's own (what the proxy then answers is request-body-phase.test.ts).
 */

interface Reading {
  req: IncomingMessage;
  res: ServerResponse;
  outcome: Promise<BodyOutcome>;
}

let server: Server | undefined;
let route: RouteRuntime | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  route?.close();
  server = route = undefined;
});

/** A server whose every request is read through `filters`; the route is a real one, named `tools`. */
async function reader(filters: RequestBodyFilter[], idleMs = 2_000): Promise<{ readings: Reading[]; send: (bytes: string) => Promise<Socket> }> {
  route = routeFor('http://127.0.0.1:9', new HandsOutAnything(undefined), { allow: ['POST /**'] }, 'tools');
  const readings: Reading[] = [];
  server = createServer((req, res) => {
    const ctx: RequestContext = { ...contextOf(), route };
    readings.push({ req, res, outcome: readRequestBody(req, ctx, filters, idleMs) });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  const send = (bytes: string) =>
    new Promise<Socket>((resolve) => {
      const sock = connect(port, '127.0.0.1', () => {
        sock.write(bytes);
        resolve(sock);
      });
      sock.on('error', () => undefined);
      sockets.push(sock);
    });
  return { readings, send };
}

const post = (contentLength: number, body: string) => `POST /tools/x HTTP/1.1\r\nHost: x\r\nContent-Length: ${contentLength}\r\n\r\n${body}`;

/** A filter that accepts everything and counts what it was shown. */
function counting(name: string, maxBytes: number, verdict?: (body: Buffer) => DeniedError | undefined) {
  const seen = { chunks: [] as string[], ends: [] as string[] };
  const filter: RequestBodyFilter = {
    name,
    maxBytes,
    chunk: (c) => void seen.chunks.push(c.toString('latin1')),
    end: (b) => {
      seen.ends.push(b.toString('latin1'));
      return verdict?.(b);
    },
  };
  return { filter, seen };
}

async function firstOutcome(readings: Reading[]): Promise<BodyOutcome> {
  await waitFor(() => readings.length === 1, { message: 'the request to reach the reader' });
  return readings[0]!.outcome;
}

describe('readRequestBody', () => {
  it('a body of exactly maxBytes is read whole and passed; one byte more is refused', async () => {
    const { filter, seen } = counting('ten', 10);
    const { readings, send } = await reader([filter]);
    await send(post(10, '0123456789'));
    expect(await firstOutcome(readings)).toEqual({ body: Buffer.from('0123456789') });
    expect(seen.ends).toEqual(['0123456789']);

    readings.length = 0;
    await send(post(11, '0123456789A'));
    const over = await firstOutcome(readings);
    expect('refused' in over && over.refused).toBeInstanceOf(DeniedError);
  });

  it('the limit is the smallest maxBytes of the route’s filters, and the refusal names the route', async () => {
    const small = counting('small', 8);
    const large = counting('large', 1_000);
    const { readings, send } = await reader([large.filter, small.filter]);
    await send(post(20, 'x'.repeat(20)));
    const out = await firstOutcome(readings);
    if (!('refused' in out)) throw new Error(`expected a refusal, got ${JSON.stringify(out)}`);
    expect(out.refused).toBeInstanceOf(DeniedError);
    expect(out.refused.message).toContain('(8 bytes)');
    expect(out.refused.route).toBe('tools');
    expect(small.seen.ends).toEqual([]); // refused before the end: no filter judged a body it could not see whole
    expect(large.seen.ends).toEqual([]);
  });

  it('a chunk filter that throws refuses the request (fail closed), naming the route but not what it threw', async () => {
    const after = counting('after', 4_096);
    const throwing: RequestBodyFilter = {
      name: 'broken',
      maxBytes: 4_096,
      chunk: () => {
        throw new Error('bug quoting the body: secret-ish');
      },
      end: () => undefined,
    };
    const { readings, send } = await reader([throwing, after.filter]);
    await send(post(5, 'hello'));
    const out = await firstOutcome(readings);
    if (!('refused' in out)) throw new Error(`expected a refusal, got ${JSON.stringify(out)}`);
    expect(out.refused).toBeInstanceOf(DeniedError);
    expect(out.refused.message).toBe('the request body could not be inspected');
    expect(out.refused.route).toBe('tools');
    expect(after.seen.ends).toEqual([]);
  });

  it('every filter’s end has its say, in order: a later filter refusing refuses the request', async () => {
    const first = counting('first', 4_096);
    const second = counting('second', 4_096, () => new DeniedError('second says no'));
    const third = counting('third', 4_096);
    const { readings, send } = await reader([first.filter, second.filter, third.filter]);
    await send(post(5, 'hello'));
    const out = await firstOutcome(readings);
    if (!('refused' in out)) throw new Error(`expected a refusal, got ${JSON.stringify(out)}`);
    expect(out.refused.message).toBe('second says no');
    expect(first.seen.ends).toEqual(['hello']);
    expect(second.seen.ends).toEqual(['hello']);
    expect(third.seen.ends).toEqual([]); // the first refusal is the verdict
  });

  it('a body that stops arriving is refused after the idle timeout, naming the route', async () => {
    const { filter } = counting('f', 4_096);
    const { readings, send } = await reader([filter], 150);
    await send(post(100, '{"jsonrpc"'));
    const out = await firstOutcome(readings);
    if (!('refused' in out)) throw new Error(`expected a refusal, got ${JSON.stringify(out)}`);
    expect(out.refused).toBeInstanceOf(BadRequestError);
    expect(out.refused.message).toBe('the request body stopped arriving');
    expect(out.refused.route).toBe('tools');
  });

  it('an agent that goes away mid-body: the outcome is gone, at once (not the idle refusal later)', async () => {
    const { filter, seen } = counting('f', 4_096);
    const { readings, send } = await reader([filter], 3_000);
    const sock = await send(post(100, '{"jsonrpc"'));
    await waitFor(() => seen.chunks.length === 1, { message: 'the first chunk to reach the filter' });
    const t0 = performance.now();
    sock.destroy();
    expect(await readings[0]!.outcome).toEqual({ gone: true });
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(seen.ends).toEqual([]);
  });

  it('once it has refused, the reader lets go: the rest of the body, drained by the caller, reaches no filter', async () => {
    const seenChunks: string[] = [];
    const stop: RequestBodyFilter = {
      name: 'stop',
      maxBytes: 1 << 20,
      chunk: (c) => {
        seenChunks.push(c.toString('latin1'));
        return c.includes('STOP') ? new DeniedError('stop seen') : undefined;
      },
      end: () => undefined,
    };
    const { readings, send } = await reader([stop]);
    const rest = 'r'.repeat(64);
    const sock = await send(post(4 + rest.length, 'STOP'));
    const out = await firstOutcome(readings);
    expect('refused' in out && out.refused.message).toBe('stop seen');
    // The caller drops the rest of the body (as Node does when it answers before reading it all).
    const { req } = readings[0]!;
    const drained = new Promise<void>((r) => req.once('end', () => r()));
    req.resume();
    sock.write(rest);
    await drained;
    expect(seenChunks).toEqual(['STOP']);
  });
});
