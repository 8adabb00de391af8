import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { gunzipSync, inflateSync, brotliDecompressSync } from 'node:zlib';
import { waitFor } from './wait.js';

/** Small tools for the data-path integration tests: promises to coordinate on, raw HTTP, polling. */

export interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
  settled: boolean;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const d: Deferred<T> = {
    promise: new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
    resolve: (v) => {
      d.settled = true;
      resolve(v);
    },
    reject: (e) => {
      d.settled = true;
      reject(e);
    },
    settled: false,
  };
  d.promise.catch(() => undefined);
  return d;
}

/** Fail (rather than hang) when an awaited event does not happen within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `check` until it returns a value other than undefined, or fail after `timeoutMs`. */
export async function pollUntil<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string, intervalMs = 50): Promise<T> {
  let last: unknown;
  const found = await waitFor(
    async () => {
      try {
        const v = await check();
        return v === undefined ? undefined : { v };
      } catch (err) {
        last = err;
        return undefined;
      }
    },
    { timeoutMs, intervalMs, message: () => `${what}${last ? ` (last error: ${String(last)})` : ''}` },
  );
  return found.v;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** Header names and values exactly as received. */
  rawHeaders: string[];
  /** The body bytes as they came off the wire (no automatic decompression). */
  body: Buffer;
}

/** One HTTP/1.1 request with node:http, no agent reuse, no decompression: what the agent sees, byte for byte. */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer; timeoutMs?: number } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // The path is sent exactly as written: `new URL` would resolve dot-segments (and %2e%2e) first.
    const m = /^http:\/\/([^/]+?):(\d+)(\/.*)?$/.exec(url);
    if (!m) throw new Error(`rawRequest takes http://host:port/path, got ${url}`);
    const target = { host: m[1], port: Number(m[2]), path: m[3] ?? '/' };
    const req = httpRequest({ ...target, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The body as text, decoded per its content-encoding (so a compressed echo cannot hide from a scan). */
export function decodedText(r: RawResponse): string {
  const enc = String(r.headers['content-encoding'] ?? '').trim().toLowerCase();
  let body = r.body;
  if (enc === 'gzip' || enc === 'x-gzip') body = gunzipSync(body);
  else if (enc === 'deflate') body = inflateSync(body);
  else if (enc === 'br') body = brotliDecompressSync(body);
  return body.toString('utf8');
}

/** A port that was listening a moment ago and is now closed: connecting to it is refused. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The DESIGN §5 error shape, checked in one place. */
export function expectLeashError(r: { status: number; headers: IncomingHttpHeaders; body: Buffer }, type: string, status: number, route: string | null): string {
  const problems: string[] = [];
  if (r.status !== status) problems.push(`status ${r.status} !== ${status}`);
  if (r.headers['x-leash-error'] !== type) problems.push(`x-leash-error ${String(r.headers['x-leash-error'])} !== ${type}`);
  if (!String(r.headers['content-type']).startsWith('application/json')) problems.push(`content-type ${String(r.headers['content-type'])}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.body.toString('utf8'));
  } catch {
    problems.push(`body is not JSON: ${r.body.toString('utf8').slice(0, 200)}`);
  }
  const err = (parsed as { error?: { type?: unknown; message?: unknown; route?: unknown } } | undefined)?.error;
  if (!err || err.type !== type || typeof err.message !== 'string' || err.message.length === 0 || err.route !== route) {
    problems.push(`body ${r.body.toString('utf8').slice(0, 300)} is not {"error":{"type":"${type}","message":"…","route":${JSON.stringify(route)}}}`);
  }
  if (problems.length) throw new Error(`not a ${type} answer: ${problems.join('; ')}`);
  return (err as { message: string }).message;
}
