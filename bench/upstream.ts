import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The benchmark upstream, run as its own process: prints {"port":N} and serves
 *   GET …/ok                       small JSON answer (an API call's size, not a stream)
 *   GET …/sse?id=&delay=&mode=     SSE: headers now, first event after `delay` ms;
 *                                  mode=once ends after it, mode=forever sends one every 100 ms,
 *                                  mode=burst&n=N sends N events back to back (one write each), then ends
 *   GET /__stats                   counters and per-stream open/close times (monotonic ns)
 * Each event carries "t": process.hrtime at the write, so the client can time its relay.
 * It counts requests that arrive without the expected credential.
 */
const expected = `Bearer ${process.env.BENCH_KEY ?? ''}`;
/** CLOCK_MONOTONIC in ns, as a string: the same clock in every process on the host. */
const mono = (): string => process.hrtime.bigint().toString();

const BODY = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    model: 'bench-1',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 },
  }),
);

let requests = 0;
let badAuth = 0;
const streams: Record<string, { openedNs: string; closedNs?: string; finished?: boolean }> = {};
let seq = 0;

function sse(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
  const id = query.get('id') ?? `s${seq++}`;
  const delay = Number(query.get('delay') ?? '10');
  const forever = query.get('mode') === 'forever';
  const rec: { openedNs: string; closedNs?: string; finished?: boolean } = { openedNs: mono() };
  if (forever) streams[id] = rec;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let n = 0;
  let interval: NodeJS.Timeout | undefined;
  const first = setTimeout(() => {
    res.write(`data: {"n":${n++},"t":${mono()}}\n\n`);
    if (query.get('mode') === 'burst') {
      // A token stream arriving faster than it can be relayed: what counts is the time to the last event.
      const total = Number(query.get('n') ?? '200');
      while (n < total) res.write(`data: {"n":${n++},"choices":[{"delta":{"content":" token"}}]}\n\n`);
      return void res.end();
    }
    if (!forever) return void res.end();
    interval = setInterval(() => res.write(`data: {"n":${n++}}\n\n`), 100);
  }, delay);
  const cap = setTimeout(() => res.end(), 30_000);
  res.once('close', () => {
    clearTimeout(first);
    clearTimeout(cap);
    clearInterval(interval);
    rec.closedNs = mono();
    rec.finished = res.writableFinished;
  });
  req.resume();
}

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === '/__stats') {
    const body = JSON.stringify({ requests, badAuth, streams });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    return void res.end(body);
  }
  requests++;
  if (req.headers.authorization !== expected) badAuth++;
  if (path.endsWith('/sse')) return sse(req, res, new URLSearchParams(q < 0 ? '' : url.slice(q + 1)));
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length, 'x-request-id': `req_${requests}` });
  res.end(BODY);
});
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
