import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { LeashHttpError } from '../../core/errors.js';

/** DESIGN §5 error body. The message is leash's own text: it never holds a secret. */
export function errorBody(err: LeashHttpError): string {
  return JSON.stringify({ error: { type: err.type, message: err.message, route: err.route ?? null } });
}

function errorHeaders(err: LeashHttpError, body: string, close: boolean): Record<string, string | number> {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-leash-error': err.type,
    'cache-control': 'no-store',
  };
  if (err.retryAfterSeconds !== undefined) headers['retry-after'] = err.retryAfterSeconds;
  if (close) headers.connection = 'close';
  return headers;
}

/** Answer with a leash error; once a response has started, the only honest signal is to cut it. */
export function sendError(res: ServerResponse, err: LeashHttpError, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(err);
  res.writeHead(err.status, errorHeaders(err, body, close));
  res.end(body);
}

/** The same answer written raw to an upgrade socket, which has no ServerResponse. */
export function sendSocketError(socket: Duplex, err: LeashHttpError): void {
  if (!socket.writable) return void socket.destroy();
  const body = errorBody(err);
  const head = Object.entries(errorHeaders(err, body, true))
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  endAndClose(socket, `HTTP/1.1 ${err.status} ${statusText(err.status)}\r\n${head}\r\n${body}`);
}

/** The longest a raw connection leash has answered stays open waiting to hand its last bytes over. */
const CLOSE_GRACE_MS = 1_000;

/**
 * Ends a raw connection with its last bytes and closes it once they are handed to the
 * kernel, as Node closes a `connection: close` answer's socket (destroySoon). `end()`
 * alone only half-closes: an agent that never reads and never closes kept the socket, and
 * its slot under `connections.proxy.maxConnections`, for good (four such sockets held a
 * listener of four). A peer that does not read even those bytes loses them after 1 s.
 */
export function endAndClose(socket: Duplex, data: string | Buffer): void {
  socket.end(data, () => socket.destroy());
  const grace = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  grace.unref();
  socket.once('close', () => clearTimeout(grace));
}

function statusText(status: number): string {
  return { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' }[status] ?? 'Error';
}
