import type { IncomingHttpHeaders } from 'node:http';

/**
 * Header hygiene for both directions. Hop-by-hop headers (RFC 9110 §7.6.1) belong to one
 * connection and are never forwarded; http-proxy copies every client header, so they are
 * removed here. Credential-carrying headers from the agent are dropped before leash
 * injects its own, so the upstream sees exactly one.
 */
const KEEP_ALIVE: readonly string[] = ['keep-alive'];
const CLOSE: readonly string[] = ['close'];
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization'];
export const INBOUND_CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'x-goog-api-key', 'cookie'];
/**
 * Headers that make an upstream run another method or path than the one leash checked
 * against the allow list (Rails/Symfony/Express method-override, IIS/Symfony URL rewrite).
 * Always removed, with no per-route opt-in: leash forwards every method and path as it is,
 * so an agent never needs to tunnel one through a header, and honouring them would let an
 * allowed `POST /x` become `DELETE /x` or `GET /admin` behind leash's back.
 */
export const OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url'];
/**
 * Headers by which a proxy tells the server who the client was and which host, scheme,
 * port and prefix it asked for. The agent is the client and no proxy: what it claims here
 * is not true, and servers act on it — Rails takes `X-Forwarded-Host` as `request.host`
 * (tenant by subdomain), frameworks build links and callbacks from them, IP allow lists
 * and rate limits read the client address. The route names the upstream; the agent may
 * not re-address it or pose as another client. Always removed; leash adds none.
 */
export const FORWARDING_HEADERS = [
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-forwarded-ssl',
  'x-forwarded-scheme',
  'x-original-host',
  'x-host',
  'x-real-ip',
  'x-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  // Rails' RemoteIp (HTTP_CLIENT_IP; a private-address proxy is trusted by default), PHP apps.
  'client-ip',
  // gunicorn's default secure_scheme_headers (`ssl` → https).
  'x-forwarded-protocol',
  // request-ip (npm), django-ipware.
  'x-forwarded',
  'forwarded-for',
  'x-appengine-user-ip',
  'cf-pseudo-ipv4',
  // The usual Java getClientIp helpers.
  'proxy-client-ip',
  'wl-proxy-client-ip',
  // Envoy's client-certificate identity, appended to (not replaced) by Istio sidecars.
  'x-forwarded-client-cert',
];
/**
 * Never removable through `Connection`: they frame and address the request, and leash
 * alone sets them (framing.ts). Node has already read the body by the framing the agent
 * sent; letting the agent strip it would send that body upstream unframed.
 */
const CONNECTION_PROTECTED = new Set(['content-length', 'transfer-encoding', 'host']);
/** Response headers that describe the connection or the framing leash re-does. */
export const RESPONSE_HOP_BY_HOP: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'transfer-encoding']);

const NO_TOKENS: readonly string[] = [];

function connectionTokens(value: string | string[] | undefined): readonly string[] {
  if (!value) return NO_TOKENS;
  // The usual `keep-alive` or `close`: one token, no split.
  if (typeof value === 'string' && !value.includes(',')) {
    const t = value.trim().toLowerCase();
    return t === 'keep-alive' ? KEEP_ALIVE : t === 'close' ? CLOSE : t ? [t] : NO_TOKENS;
  }
  const text = Array.isArray(value) ? value.join(',') : value;
  return text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

/**
 * Every request header name leash removes for a route, built once per route: hop-by-hop,
 * Expect (Node answers `100 Continue` to the agent itself; forwarding it would also make
 * http-proxy skip its request hooks: docs/pitfalls.md, GHSA-6x33-pw7p-hmpq), method/URL
 * overrides, forwarding claims, agent credentials and the route's `extra` (its
 * stripHeaders and inject header).
 */
export function requestStripSet(extra: readonly string[]): ReadonlySet<string> {
  return new Set([...HOP_BY_HOP, 'expect', ...INBOUND_CREDENTIAL_HEADERS, ...OVERRIDE_HEADERS, ...FORWARDING_HEADERS, ...extra.map((h) => h.toLowerCase())]);
}

/**
 * True when `name` is removed by `strip`, also when spelt with `_` for `-`: CGI-style
 * servers (Puma, Unicorn, PHP's SAPIs, older gunicorn) read `X_HTTP_METHOD_OVERRIDE` and
 * `X-HTTP-Method-Override` as one variable (RFC 3875 §4.1.18), and Puma keeps the `_`
 * spelling when the `-` one is absent, which is what removing the `-` one leaves.
 */
export function isStripped(name: string, strip: ReadonlySet<string>): boolean {
  return strip.has(name) || (name.includes('_') && strip.has(name.replace(/_/g, '-')));
}

/**
 * Mutates the incoming headers: those in `strip` (requestStripSet, in any `_`/`-`
 * spelling) and those the agent's `Connection` names removed. One pass over the headers
 * the request has (a handful), not one `delete` per name that might be there (two dozen).
 */
export function stripRequestHeadersWith(headers: IncomingHttpHeaders, strip: ReadonlySet<string>): void {
  const connection = headers.connection;
  if (connection !== undefined) for (const t of connectionTokens(connection)) if (!CONNECTION_PROTECTED.has(t)) delete headers[t];
  for (const name in headers) if (isStripped(name, strip)) delete headers[name];
}

/** stripRequestHeadersWith for a one-off list (tests, callers without a route). */
export function stripRequestHeaders(headers: IncomingHttpHeaders, extra: readonly string[]): void {
  stripRequestHeadersWith(headers, requestStripSet(extra));
}

/** Response header names leash does not pass back: hop-by-hop plus those the connection header lists. */
export function responseSkipSet(connection: string | string[] | undefined): ReadonlySet<string> {
  const tokens = connectionTokens(connection);
  // Usually "keep-alive" or "close": nothing beyond the fixed set, so no new Set per response.
  if (tokens.every((t) => RESPONSE_HOP_BY_HOP.has(t) || t === 'close')) return RESPONSE_HOP_BY_HOP;
  const set = new Set(RESPONSE_HOP_BY_HOP);
  for (const t of tokens) set.add(t);
  return set;
}

/** True when the raw headers carry more than one Host: Node keeps the first, an upstream may take another. */
export function hasDuplicateHost(rawHeaders: readonly string[]): boolean {
  let seen = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host' && ++seen > 1) return true;
  }
  return false;
}

/** Accept-Encoding narrowed to what leash can decode when it has to scrub an error body. */
const DECODABLE = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'identity']);
export function decodableAcceptEncoding(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const kept = value.split(',').filter((part) => DECODABLE.has(part.split(';')[0]!.trim().toLowerCase()));
  return kept.length ? kept.join(',') : 'identity';
}
