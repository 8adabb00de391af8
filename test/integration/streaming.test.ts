import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { deferred, pollUntil, within, type Deferred } from '../helpers/proxy-util.js';

/**
 * Streams in both directions pass through leash as they happen, and an agent that goes
 * away cancels the upstream (http-proxy alone does not on Node ≥ 16: docs/pitfalls.md).
 * Every step is coordinated on events; `within` only turns a hang into a failure.
 */
const SECRET = 'sk-stream-6f1e2d3c4b5a69788796a5b4';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler = (_req, res) => res.end();
let upstream: Upstream;
let leash: RunningSidecar;

beforeAll(async () => {
  upstream = await startUpstream((req, res) => handler(req, res));
  leash = await startSidecar(
    {
      routes: {
        s: {
          upstream: upstream.url,
          credential: { env: 'KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['GET /v1/**', 'POST /v1/**'],
        },
      },
    },
    { env: { KEY: SECRET } },
  );
});

afterAll(async () => {
  await leash?.stop();
  await upstream?.close();
});

beforeEach(() => {
  handler = (_req, res) => res.end();
});

/** Reads a fetch body, resolving one promise per complete `\n\n`-terminated event as it arrives. */
async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (event: string, index: number) => void, separator = '\n\n'): Promise<string[]> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const events: string[] = [];
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let at: number;
    while ((at = buf.indexOf(separator)) !== -1) {
      const event = buf.slice(0, at);
      buf = buf.slice(at + separator.length);
      events.push(event);
      onEvent(event, events.length - 1);
    }
  }
  return events;
}

describe('responses stream unbuffered', () => {
  it('SSE: each event reaches the agent before the upstream writes the next', async () => {
    const N = 5;
    const received: Deferred[] = Array.from({ length: N }, () => deferred());
    const upstreamDone = deferred<string | undefined>();
    handler = (req, res) => {
      void (async () => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        try {
          for (let i = 0; i < N; i++) {
            res.write(`data: {"n":${i}}\n\n`);
            // The next event is written only once the agent has this one: a buffering proxy hangs here.
            await within(received[i]!.promise, 3_000, `agent to receive SSE event ${i} while the stream is open`);
          }
          res.end('data: [DONE]\n\n');
          upstreamDone.resolve(req.headers.authorization);
        } catch (err) {
          upstreamDone.reject(err);
          res.destroy();
        }
      })();
    };
    const res = await fetch(`${leash.url}/s/v1/stream`, { headers: { accept: 'text/event-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = await within(
      readEvents(res.body!, (_e, i) => received[i]?.resolve()),
      5_000,
      'the SSE stream to finish',
    );
    expect(await upstreamDone.promise).toBe(`Bearer ${SECRET}`);
    expect(events).toEqual(['data: {"n":0}', 'data: {"n":1}', 'data: {"n":2}', 'data: {"n":3}', 'data: {"n":4}', 'data: [DONE]']);
  });

  it('chunked NDJSON: each line reaches the agent before the upstream writes the next', async () => {
    const N = 4;
    const received: Deferred[] = Array.from({ length: N }, () => deferred());
    handler = (_req, res) => {
      void (async () => {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        try {
          for (let i = 0; i < N; i++) {
            res.write(`{"line":${i}}\n`);
            await within(received[i]!.promise, 3_000, `agent to receive line ${i}`);
          }
          res.end();
        } catch {
          res.destroy();
        }
      })();
    };
    const res = await fetch(`${leash.url}/s/v1/lines`);
    expect(res.status).toBe(200);
    const lines = await within(readEvents(res.body!, (_e, i) => received[i]?.resolve(), '\n'), 5_000, 'the NDJSON stream to finish');
    expect(lines).toEqual(['{"line":0}', '{"line":1}', '{"line":2}', '{"line":3}']);
  });
});

describe('request bodies stream unbuffered', () => {
  it('the upstream sees the first chunk of a chunked upload before the agent has finished sending', async () => {
    const firstChunk = deferred<string>();
    const upstreamSaw = deferred<{ te: string | undefined; auth: string | undefined; body: string }>();
    handler = (req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        if (parts.length === 0) firstChunk.resolve(c.toString('utf8'));
        parts.push(c);
      });
      req.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        upstreamSaw.resolve({ te: req.headers['transfer-encoding'], auth: req.headers.authorization, body });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes: Buffer.byteLength(body) }));
      });
    };
    const response = deferred<{ status: number; body: string }>();
    const req = httpRequest(`${leash.url}/s/v1/upload`, { method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => response.resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (err) => response.reject(err));
    req.write('part-1:' + 'a'.repeat(1000));
    // The rest is written only after the upstream has the first part: a buffering proxy would hang here.
    const first = await within(firstChunk.promise, 3_000, 'the upstream to receive the first chunk while the upload is still open');
    expect(first.startsWith('part-1:')).toBe(true);
    expect(upstreamSaw.settled).toBe(false);
    req.write('part-2:' + 'b'.repeat(1000));
    req.end('part-3');
    const saw = await within(upstreamSaw.promise, 3_000, 'the upstream to receive the whole body');
    expect(saw.te).toBe('chunked');
    expect(saw.auth).toBe(`Bearer ${SECRET}`);
    expect(saw.body).toBe(`part-1:${'a'.repeat(1000)}part-2:${'b'.repeat(1000)}part-3`);
    const r = await within(response.promise, 3_000, 'the response');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ bytes: 2020 });
  });
});

interface UpstreamStream {
  /** Resolves with whether the upstream response had finished when its connection closed. */
  closed: Deferred<{ finished: boolean; written: number }>;
}

/**
 * An SSE upstream that would write TOTAL events, one every STEP ms, unless its client
 * goes away. Each request's fate is recorded in `streams` in arrival order.
 */
const TOTAL = 200;
const STEP = 10;
function endlessSse(streams: UpstreamStream[], holdHeaders = false): Handler {
  return (req, res) => {
    const s: UpstreamStream = { closed: deferred() };
    streams.push(s);
    let written = 0;
    let timer: NodeJS.Timeout | undefined;
    res.on('close', () => {
      clearInterval(timer);
      s.closed.resolve({ finished: res.writableFinished, written });
    });
    if (holdHeaders) return; // never answers: the agent gives up first
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const tick = () => {
      if (res.destroyed) return;
      res.write(`data: {"i":${written}}\n\n`);
      if (++written >= TOTAL) {
        clearInterval(timer);
        res.end();
      }
    };
    tick();
    timer = setInterval(tick, STEP);
    void req;
  };
}

/** Open an SSE stream through leash, wait for the first event, then drop it the way a client would. */
async function openAndAbort(url: string, how: 'fetch-abort' | 'http-destroy'): Promise<void> {
  if (how === 'fetch-abort') {
    const ac = new AbortController();
    const res = await fetch(url, { signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('data: {"i":0}');
    ac.abort();
    await reader.read().then(
      () => undefined,
      () => undefined,
    );
    return;
  }
  const gotFirst = deferred();
  const req = httpRequest(url, { agent: false }, (res) => {
    expect(res.statusCode).toBe(200);
    res.once('data', (c: Buffer) => {
      expect(c.toString()).toContain('data: {"i":0}');
      gotFirst.resolve();
    });
  });
  req.on('error', () => undefined);
  req.end();
  await within(gotFirst.promise, 3_000, 'the first event');
  req.destroy();
}

/** Closed before it finished, after writing at least the event the agent read, within a second of the abort. */
const cancelledPromptly = (r: { finished: boolean; written: number; ms: number }) => !r.finished && r.written >= 1 && r.written < TOTAL && r.ms < 1_000;

describe('an agent that goes away cancels the upstream', () => {
  it('20 of 20 aborted SSE streams close the upstream promptly, long before it would have finished', async () => {
    const streams: UpstreamStream[] = [];
    handler = endlessSse(streams);
    const results: { finished: boolean; written: number; ms: number }[] = [];
    for (let i = 0; i < 20; i++) {
      const how = i % 2 === 0 ? 'fetch-abort' : 'http-destroy';
      // The first event is written at once; a proxy that buffers the stream does not deliver it in time.
      await within(openAndAbort(`${leash.url}/s/v1/stream?n=${i}`, how), 1_000, `stream ${i} (${how}) to open and deliver its first event`);
      const abortedAt = performance.now();
      const s = streams[i]!;
      const outcome = await within(s.closed.promise, 1_000, `upstream of stream ${i} (${how}) to see the cancel`).catch(() => ({ finished: true, written: -1 }));
      const r = { ...outcome, ms: performance.now() - abortedAt };
      results.push(r);
      if (!cancelledPromptly(r)) break; // one miss already fails the test: do not wait 19 more times
    }
    const cancelled = results.filter(cancelledPromptly);
    expect(cancelled.length, JSON.stringify(results)).toBe(20);
    expect(streams).toHaveLength(20);
  });

  it('aborting before the upstream has answered (headers delayed) cancels the upstream request', async () => {
    const streams: UpstreamStream[] = [];
    handler = endlessSse(streams, true);
    // fetch + AbortController
    const ac = new AbortController();
    const pending = fetch(`${leash.url}/s/v1/slow`, { signal: ac.signal }).then(
      () => 'answered',
      (e: Error) => e.name,
    );
    await pollUntil(async () => (streams.length >= 1 ? true : undefined), 3_000, 'the request to reach the upstream', 5);
    ac.abort();
    expect(await pending).toBe('AbortError');
    const first = await within(streams[0]!.closed.promise, 1_000, 'the upstream to see the first cancel');
    expect(first.finished).toBe(false);
    expect(first.written).toBe(0);

    // http.request destroyed
    const req = httpRequest(`${leash.url}/s/v1/slow`, { agent: false });
    req.on('error', () => undefined);
    req.end();
    await pollUntil(async () => (streams.length >= 2 ? true : undefined), 3_000, 'the second request to reach the upstream', 5);
    req.destroy();
    const second = await within(streams[1]!.closed.promise, 1_000, 'the upstream to see the second cancel');
    expect(second.finished).toBe(false);

    // leash records the agent's disappearance (nginx-style 499), not a success.
    const closed = await pollUntil(
      async () => {
        const got = leash.logs.events('request').filter((e) => e.path === '/v1/slow');
        return got.length >= 2 ? got : undefined;
      },
      2_000,
      'the request audit events',
      5,
    );
    expect(closed.map((e) => e.status)).toEqual([499, 499]);
  });
});
