import type { IncomingHttpHeaders } from 'node:http';
import { BadRequestError } from '../../core/errors.js';

/**
 * Request framing is leash's alone to decide. The agent's bytes were parsed by Node
 * (llhttp, strict): that parse says whether a body follows and how long it is, and the
 * upstream must see exactly the same boundaries. So the framing headers the agent sent are
 * never copied as they were: leash removes them and sets its own from the parse. A body
 * that reached the upstream without a Content-Length or `Transfer-Encoding: chunked` of
 * leash's making would be read as the start of the next request on the pooled keep-alive
 * socket, which leash would then complete with its own Host and credential (smuggling).
 */
export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: string }
  | { readonly kind: 'chunked' };

/** No body: the framing of most requests (one shared object). */
export const NO_FRAMING: Framing = Object.freeze({ kind: 'none' });

/**
 * Methods whose request body is refused (RFC 9110 §9.3.2, §9.3.8): a HEAD or TRACE body
 * has no use, and intermediaries disagree on whether to read one, which is what smuggling
 * feeds on. A GET body is framed and forwarded like any other (RFC 9112 frames a message
 * by its headers, whatever the method): search APIs of vector stores (Elasticsearch,
 * OpenSearch `GET /_search`) rely on it.
 */
const NO_BODY_METHODS = new Set(['HEAD', 'TRACE']);

function rawValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === name) out.push(rawHeaders[i + 1]!);
  }
  return out;
}

/**
 * The framing leash sends upstream for one request, or the error that refuses it. Pure:
 * it reads the method and the raw headers only.
 *
 * Transfer-Encoding: anything but the single coding `chunked` is refused (400), never
 * normalised. Node removes only the chunked coding, so a body sent as `gzip, chunked`
 * reaches leash still gzip-coded: re-sending it as plain chunked would corrupt it, and
 * forwarding the list verbatim hands the upstream a coding list that parsers disagree on
 * (`identity`, obsolete since RFC 7230, is the classic TE.TE smuggling obfuscation). No
 * real client sends a request transfer-coding other than chunked, and RFC 9112 §6.1 lets a
 * server refuse one it does not handle. Case and whitespace are not significant
 * (`Chunked` is accepted and sent as `chunked`).
 */
export function decideFraming(method: string, rawHeaders: readonly string[], parsed?: IncomingHttpHeaders): Framing | BadRequestError {
  // Node's parsed headers hold every header line it read: neither framing header there means
  // none in the raw ones either (the common bodiless GET skips the raw scan).
  if (parsed && parsed['transfer-encoding'] === undefined && parsed['content-length'] === undefined) return NO_FRAMING;
  const te = rawValues(rawHeaders, 'transfer-encoding');
  const cl = rawValues(rawHeaders, 'content-length');
  // Node's parser already refuses both together and differing lengths; checked again here
  // so the guarantee does not rest on a parser flag (--insecure-http-parser).
  if (te.length > 0 && cl.length > 0) return new BadRequestError('both Transfer-Encoding and Content-Length are present');
  let framing: Framing = { kind: 'none' };
  if (te.length > 0) {
    const codings = te
      .join(',')
      .split(',')
      .map((c) => c.trim().toLowerCase())
      .filter(Boolean);
    if (codings.length !== 1 || codings[0] !== 'chunked') return new BadRequestError('only "Transfer-Encoding: chunked" is accepted on a request');
    framing = { kind: 'chunked' };
  } else if (cl.length > 0) {
    const values = new Set(cl.map((v) => v.trim()));
    const [length] = values;
    if (values.size !== 1 || !/^\d{1,15}$/.test(length!)) return new BadRequestError('invalid Content-Length');
    framing = { kind: 'length', length: String(Number(length)) };
  }
  const hasBody = framing.kind === 'chunked' || (framing.kind === 'length' && framing.length !== '0');
  if (hasBody && NO_BODY_METHODS.has(method)) return new BadRequestError(`a ${method} request must not carry a body`);
  return framing;
}

/** The outgoing framing header, if any: [name, value]. */
export function framingHeader(framing: Framing): [string, string] | undefined {
  if (framing.kind === 'length') return ['content-length', framing.length];
  if (framing.kind === 'chunked') return ['transfer-encoding', 'chunked'];
  return undefined;
}
