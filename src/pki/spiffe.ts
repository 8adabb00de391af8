/**
 * SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md §2):
 * `spiffe://<trust domain><path>`, scheme and trust domain lower case, trust domain of
 * [a-z0-9._-], path segments of [A-Za-z0-9._-], no empty, "." or ".." segments, no
 * trailing slash, no query, fragment, port, user info or percent-encoding. leash always
 * wants a workload ID, so the path must be non-empty.
 */
import { SpiffeIdError } from './errors.js';

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_ID_BYTES = 2048; // SPIFFE-ID §2.3 (URI SAN interoperability)

export interface SpiffeId {
  id: string;
  trustDomain: string;
  /** Begins with "/". */
  path: string;
}

export function validateTrustDomain(trustDomain: string): string {
  if (!TRUST_DOMAIN.test(trustDomain)) {
    throw new SpiffeIdError(`trust domain must be 1-255 characters of a-z 0-9 . _ - (got ${JSON.stringify(trustDomain.slice(0, 64))})`);
  }
  return trustDomain;
}

function validatePath(path: string, shown: string): string {
  const segments = path.split('/').slice(1);
  if (!path.startsWith('/') || segments.length === 0 || (segments.length === 1 && segments[0] === '')) {
    throw new SpiffeIdError(`SPIFFE ID needs a non-empty path: ${shown}`);
  }
  for (const s of segments) {
    if (s === '') throw new SpiffeIdError(`SPIFFE ID path has an empty segment (or a trailing slash): ${shown}`);
    if (s === '.' || s === '..') throw new SpiffeIdError(`SPIFFE ID path has a dot segment: ${shown}`);
    if (!SEGMENT.test(s)) throw new SpiffeIdError(`SPIFFE ID path segments may hold only A-Z a-z 0-9 . _ - : ${shown}`);
  }
  return path;
}

/** Parse and validate; throws SpiffeIdError (LEASH_ERR_SPIFFE_ID_INVALID). */
export function parseSpiffeId(id: string): SpiffeId {
  const shown = JSON.stringify(id.slice(0, 200));
  if (Buffer.byteLength(id, 'utf8') > MAX_ID_BYTES) throw new SpiffeIdError(`SPIFFE ID longer than ${MAX_ID_BYTES} bytes`);
  if (!id.startsWith('spiffe://')) throw new SpiffeIdError(`SPIFFE ID must start with "spiffe://": ${shown}`);
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  validateTrustDomain(trustDomain);
  const path = validatePath(slash === -1 ? '' : rest.slice(slash), shown);
  return { id, trustDomain, path };
}

/**
 * `spiffe://<trustDomain>/<path>`, validated. `path` may be given with or without its
 * leading slash ("ns/agents/sa/doc-agent" or "/ns/agents/sa/doc-agent").
 */
export function spiffeId(trustDomain: string, path: string): string {
  validateTrustDomain(trustDomain);
  const p = path.startsWith('/') ? path : `/${path}`;
  return parseSpiffeId(`spiffe://${trustDomain}${p}`).id;
}
