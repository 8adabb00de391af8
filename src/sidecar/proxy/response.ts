import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { responseSkipSet } from './headers.js';
import type { RouteRuntime } from './route.js';
import { ScrubStream, type Scrubber } from './scrub.js';

/**
 * Writes the upstream's answer back to the agent (http-proxy runs with
 * selfHandleResponse, so this is the only place a response is written): hop-by-hop
 * headers dropped, held secrets scrubbed from headers, same-origin redirects rewritten to
 * the local prefix, bodies piped unbuffered — except error bodies, which are scrubbed.
 */
export const ERROR_BODY_LIMIT = 64 * 1024;

export function forwardResponse(proxyRes: IncomingMessage, res: ServerResponse, route: RouteRuntime, method: string, scrubber: Scrubber): void {
  const status = proxyRes.statusCode ?? 502;
  const isError = status >= 400;
  // A redirect's body usually repeats its target URL (framework "Redirecting to …" pages):
  // with query injection that URL carries the credential, so it is scrubbed like an error body.
  const isRedirect = status >= 300 && status < 400;
  const contentType = proxyRes.headers['content-type'] ?? '';
  const stream = contentType.startsWith('text/event-stream');
  // An error is scrubbed whatever its content type (a 401 sent as an event stream included).
  const scrubBody = (isError || (isRedirect && !stream)) && method !== 'HEAD' && status !== 204 && status !== 304;
  const skip = responseSkipSet(proxyRes.headers.connection);
  const raw = proxyRes.rawHeaders;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (skip.has(lower)) continue;
    if (scrubBody && (lower === 'content-length' || lower === 'content-encoding')) continue;
    let value = isError ? scrubber.full(raw[i + 1]!) : scrubber.whole(raw[i + 1]!);
    if (lower === 'location') value = rewriteLocation(value, route);
    headers.push(name, value);
  }
  proxyRes.on('error', () => res.destroy());
  if (!scrubBody) {
    res.writeHead(status, proxyRes.statusMessage, headers);
    if (stream) res.flushHeaders();
    proxyRes.pipe(res);
    return;
  }
  scrubErrorBody(proxyRes, res, status, headers, scrubber);
}

function decoderFor(encoding: string | undefined): Transform | 'identity' | undefined {
  switch ((encoding ?? 'identity').trim().toLowerCase()) {
    case 'identity':
    case '':
      return 'identity';
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return undefined;
  }
}

function scrubErrorBody(proxyRes: IncomingMessage, res: ServerResponse, status: number, headers: string[], scrubber: Scrubber): void {
  const decoder = decoderFor(proxyRes.headers['content-encoding']);
  if (decoder === undefined) {
    // An encoding leash cannot decode cannot be scrubbed: withhold the body, keep the status.
    proxyRes.resume();
    res.writeHead(status, proxyRes.statusMessage, [...headers, 'content-length', '0', 'x-leash-body-withheld', 'unscrubbable-encoding']);
    res.end();
    return;
  }
  let source: Readable = proxyRes;
  if (decoder !== 'identity') {
    decoder.on('error', () => {
      proxyRes.destroy();
      res.destroy();
    });
    source = proxyRes.pipe(decoder);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size <= ERROR_BODY_LIMIT) return;
    // Too large to hold: stream the rest, scrubbing whole secrets across chunk borders.
    source.off('data', onData).off('end', onEnd);
    source.pause();
    res.writeHead(status, proxyRes.statusMessage, headers);
    const scrub = new ScrubStream(scrubber);
    scrub.pipe(res);
    for (const c of chunks) scrub.write(c);
    chunks.length = 0;
    source.pipe(scrub);
  };
  const onEnd = () => {
    const body = Buffer.concat(chunks);
    const text = body.toString('utf8');
    const scrubbed = scrubber.full(text);
    const out = scrubbed === text ? body : Buffer.from(scrubbed, 'utf8');
    res.writeHead(status, proxyRes.statusMessage, [...headers, 'content-length', String(out.length)]);
    res.end(out);
  };
  source.on('data', onData).on('end', onEnd);
}

/**
 * A redirect to the upstream origin inside the route's base path becomes the local
 * `/<route>/…` path, so the agent comes back through leash. Anything else is left as is:
 * leash never follows redirects, so the credential never reaches another host.
 */
export function rewriteLocation(location: string, route: RouteRuntime): string {
  let path: string | undefined;
  if (location.startsWith('/') && !location.startsWith('//') && !location.startsWith('/\\')) path = location;
  else if (/^https?:\/\//i.test(location)) {
    try {
      const u = new URL(location);
      if (u.origin === route.origin) path = `${u.pathname}${u.search}${u.hash}`;
    } catch {
      return location;
    }
  }
  if (path === undefined) return location;
  const base = route.basePath;
  if (base && path !== base && !path.startsWith(`${base}/`) && !path.startsWith(`${base}?`)) return `${route.origin}${path}`;
  const rest = path.slice(base.length);
  return `/${route.name}${rest.startsWith('/') ? rest : `/${rest}`}`;
}

/**
 * An upstream's answer written raw to an upgrade socket (a refused WebSocket handshake):
 * hop-by-hop headers dropped, headers and body fully scrubbed, the connection closed.
 */
export function writeRawResponse(proxyRes: IncomingMessage, socket: Duplex, scrubber: Scrubber): void {
  const skip = responseSkipSet(proxyRes.headers.connection);
  const status = proxyRes.statusCode ?? 502;
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  const raw = proxyRes.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (skip.has(lower) || lower === 'content-length' || lower === 'content-encoding') continue;
    head += `${raw[i]}: ${scrubber.full(raw[i + 1]!)}\r\n`;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  proxyRes.on('data', (c: Buffer) => {
    size += c.length;
    if (size > ERROR_BODY_LIMIT) {
      proxyRes.destroy();
      socket.destroy();
    } else chunks.push(c);
  });
  proxyRes.on('error', () => socket.destroy());
  proxyRes.on('end', () => {
    const encoded = proxyRes.headers['content-encoding'];
    const text = encoded && encoded !== 'identity' ? '' : scrubber.full(Buffer.concat(chunks).toString('utf8'));
    const body = Buffer.from(text, 'utf8');
    socket.end(`${head}content-length: ${body.length}\r\nconnection: close\r\n\r\n${text}`);
  });
}
