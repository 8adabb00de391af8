import { BadRequestError, NoRouteError } from '../../core/errors.js';

/**
 * The request target, parsed and normalised once (DESIGN §5). The upstream URL is never
 * built with `new URL(req.url, base)`: that resolves `//evil/x`, `http://evil/x` and
 * `/\evil/x` to host `evil` (docs/pitfalls.md). Only origin-form targets are accepted; each
 * segment is percent-decoded exactly once for matching, and dot-segments (plain,
 * encoded or double-encoded), encoded slashes, backslashes and NUL are refused rather
 * than resolved, so what is matched is what the upstream receives.
 */
export interface Target {
  readonly route: string;
  /** Decoded segments after the route prefix: what `allow` rules match. */
  readonly segments: readonly string[];
  /** The raw (still encoded) path after the route prefix, starting with `/`. */
  readonly rawPath: string;
  /** The raw query string including `?`, or ''. */
  readonly query: string;
}

// Anything but printable ASCII other than space; Node's parser refuses most of it already.
const BAD_CHAR = /[^\x21-\x7e]|\\/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;
// After one decode: still-encoded dot, slash, backslash or NUL means double encoding.
const DOUBLE_ENCODED = /%(?:2e|2f|5c|00)/i;
// C0 and C1 controls and DEL, once decoded (NUL has its own message above).
const ENCODED_CONTROL = /[\x01-\x1f\x7f-\x9f]/;
// `..;x` is `..` to servlet containers.
const DOT_SEGMENT = /^\.\.?(?:;.*)?$/;

const NON_ASCII = /[^\x00-\x7f]/;
/**
 * Characters that Windows' "best fit" conversion to a code page turns into `/`, `\` or `.`
 * (∕ ⁄ ∖ ⧵ in most code pages, ¥ in Japanese and ₩ in Korean ones, the dot leaders):
 * a server reading the path through an ANSI API sees the delimiter.
 */
const BEST_FIT = /[\u2215\u2044\u2216\u29f5\u00a5\u20a9\u2024\u2025\u2026]/;
/** What a normalised segment must not contain: a separator, an escape, a query, fragment or path parameter start, NUL. */
const DELIMITER = /[/\\%;?#\0]/;
/** `...`: Windows drops trailing dots from a path segment, so any run of dots is `.` or nothing there. */
const ONLY_DOTS = /^\.+$/;

/**
 * Pure: a decoded segment with a compatibility character that becomes a delimiter or a
 * dot-segment once normalised. `%EF%BC%8E%EF%BC%8E` is `．．` here, one harmless segment
 * that a `*` matches, and `..` to a server that applies NFKC (Unicode-normalising
 * frameworks, WAF-style input filters), `／` (U+FF0F) a second `/`, `％2e` an escape
 * decoded again; so are the best-fit characters above on Windows.
 */
export function readsAsDelimiter(decoded: string): boolean {
  if (BEST_FIT.test(decoded)) return true;
  const n = decoded.normalize('NFKC');
  return n !== decoded && (DELIMITER.test(n) || DOT_SEGMENT.test(n) || ONLY_DOTS.test(n));
}

/** A target whose first segment names the route (`/<route>/…`: the prefix resolver, resolve.ts). */
export function parseTarget(url: string): Target | BadRequestError | NoRouteError {
  return parse(url, true);
}

/**
 * A target for a route chosen otherwise (by Host: resolve.ts): the whole path is the
 * route's, `route` is ''. Same checks and normalisation as parseTarget.
 */
export function parseWholePath(url: string): Target | BadRequestError {
  return parse(url, false) as Target | BadRequestError;
}

function parse(url: string, prefixed: boolean): Target | BadRequestError | NoRouteError {
  if (url.charCodeAt(0) !== 47 /* / */) {
    return new BadRequestError('only origin-form request targets ("/route/...") are accepted');
  }
  // A request target has no fragment (RFC 9112 §3.2.1), but Node's parser passes `#`
  // through. Matched as a path character, `/r/v1/repos/x#/issues` met a rule for
  // `/v1/repos/*/issues`, and the upstream request line, cut at `#` by URL parsers, asked
  // for `/v1/repos/x` with the credential; in the query it cut off an injected key.
  if (url.indexOf('#') !== -1) return new BadRequestError('the request target contains "#": a fragment is never sent to a server');
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  const override = methodOverrideParam(query);
  if (override !== undefined) {
    return new BadRequestError(`the query names a method override ("${override}"): send the method itself`);
  }
  // http-proxy joins the outgoing path with `.replace('http:/', 'http://')` (and https):
  // `/pub/http:/x` would leave as `/pub/http://x`, not what was matched (docs/pitfalls.md).
  if (path.includes('http:/') || path.includes('https:/')) {
    return new BadRequestError('the path contains "http:/" or "https:/", which the proxy engine would rewrite');
  }
  // Servlet containers (Tomcat, Jetty; Spring's UrlPathHelper too) cut `;params` from each
  // segment before routing, then merge the `//` left: `/v1/files/;x` is `/v1/files/` to
  // them, so a `*` that matched `;x` matched a segment the upstream never sees, and
  // `DELETE /v1/files/*` reached `DELETE /v1/files` (docs/configuration.md).
  if (path.includes('/;')) {
    return new BadRequestError('the path contains a segment starting with ";", which servlet containers drop as path parameters');
  }
  const plain = parsePlainPath(path, query, prefixed);
  if (plain !== undefined) return plain;
  return parseGeneralPath(path, query, prefixed);
}

/**
 * The common case in one scan, without regexes or a decoded copy: printable ASCII, no `%`
 * (nothing to decode: each segment is its own decoded form) and no empty segment (`//`,
 * which the general path drops). Anything else, undefined: the general path decides.
 * Same answers as parseGeneralPath (test/unit/target-fast-path.test.ts checks both).
 */
function parsePlainPath(path: string, query: string, prefixed: boolean): Target | BadRequestError | NoRouteError | undefined {
  const segments: string[] = [];
  let start = 1;
  // Reported after the scan: the general path refuses a bad character before a dot-segment.
  let dotSegment = false;
  for (let i = 1; i <= path.length; i++) {
    const c = i === path.length ? 47 : path.charCodeAt(i);
    if (c === 47 /* / */) {
      if (i === start) {
        if (i === path.length) break; // a trailing slash (or the bare "/")
        return undefined; // an empty segment: "//"
      }
      const seg = path.slice(start, i);
      if (seg.charCodeAt(0) === 46 /* . */ && DOT_SEGMENT.test(seg)) dotSegment = true;
      segments.push(seg);
      start = i + 1;
    } else if (c < 0x21 || c > 0x7e || c === 92 /* \ */) {
      return new BadRequestError('the path contains a backslash, control or non-ASCII character');
    } else if (c === 37 /* % */) {
      return undefined;
    }
  }
  if (dotSegment) return new BadRequestError('the path contains a dot-segment ("." or "..")');
  if (!prefixed) return { route: '', segments, rawPath: path, query };
  if (segments.length === 0) return new NoRouteError('no route: the path must start with "/<route>/"');
  const route = segments.shift()!;
  // Without empty segments the raw path after the prefix is the text after it ("/" when none).
  const rawPath = segments.length === 0 ? '/' : path.slice(1 + route.length);
  return { route, segments, rawPath, query };
}

/** Any origin-form path: percent-decoding, empty segments, every refusal (see the interface). */
function parseGeneralPath(path: string, query: string, prefixed: boolean): Target | BadRequestError | NoRouteError {
  if (BAD_CHAR.test(path)) return new BadRequestError('the path contains a backslash, control or non-ASCII character');
  if (BAD_PERCENT.test(path)) return new BadRequestError('the path contains a malformed percent-encoding');

  const raw = path.split('/').filter((s) => s !== '');
  const decoded: string[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const seg = raw[i]!;
    let d = seg;
    if (seg.includes('%')) {
      try {
        d = decodeURIComponent(seg);
      } catch {
        return new BadRequestError('the path contains a malformed percent-encoding');
      }
      if (d.includes('/') || d.includes('\\') || d.includes('\0')) {
        return new BadRequestError('the path contains an encoded slash, backslash or NUL');
      }
      if (DOUBLE_ENCODED.test(d)) return new BadRequestError('the path contains a double-encoded dot, slash, backslash or NUL');
      // No API path needs one, and the path is shown to operators (leash scopes, leash
      // trace): an encoded ESC could recolour or hide what a terminal prints after it.
      if (ENCODED_CONTROL.test(d)) return new BadRequestError('the path contains an encoded control character');
      if (NON_ASCII.test(d) && readsAsDelimiter(d)) {
        return new BadRequestError('the path contains an encoded character that reads as "/", "\\", "." or another delimiter once normalised');
      }
    }
    if (DOT_SEGMENT.test(d)) return new BadRequestError('the path contains a dot-segment ("." or "..")');
    decoded[i] = d;
  }
  if (!prefixed) return { route: '', segments: decoded, rawPath: `/${raw.join('/')}${raw.length > 0 && path.endsWith('/') ? '/' : ''}`, query };
  if (decoded.length === 0) return new NoRouteError('no route: the path must start with "/<route>/"');
  const rest = raw.slice(1);
  const trailing = rest.length > 0 && path.endsWith('/') ? '/' : '';
  return { route: decoded[0]!, segments: decoded.slice(1), rawPath: `/${rest.join('/')}${trailing}`, query };
}

/**
 * Query parameters that make an upstream run another method than the request's, in the
 * form their readers compare them: Symfony and Laravel (`_method`, read from the query
 * too), Spring's HiddenHttpMethodFilter and Jersey/airlift filters (`_method`, query or
 * form), Salesforce's REST API (`_HttpMethod`), the Flask MethodRewriteMiddleware recipe
 * (`__METHOD_OVERRIDE__`), and the override headers' names, which some servers take as
 * parameters. Like the headers (headers.ts OVERRIDE_HEADERS) they are never forwarded:
 * an allowed `POST /x?_method=DELETE` would run as `DELETE /x`.
 */
const OVERRIDE_PARAMS = new Set(['_method', '_httpmethod', '__method_override__', 'x_http_method_override', 'x_http_method', 'x_method_override']);
// Cheap test first: no parameter can name one without these letters or an escape.
const MAYBE_OVERRIDE = /method|%/i;

/**
 * The first method-override parameter in the query, by its canonical name (never echoed
 * as sent); undefined if none.
 * Names are read as the upstreams read them: split at `&` and `;` (Rack 2), `+`,
 * `%uXXXX` and percent-escapes decoded once, cut at a NUL (PHP), case ignored, leading spaces dropped and ` `, `.`, `[`
 * and `-` read as `_` (PHP's register rules, CGI), a `[...]` suffix ignored.
 */
export function methodOverrideParam(query: string): string | undefined {
  if (query.length < 2 || !MAYBE_OVERRIDE.test(query)) return undefined;
  for (const pair of query.slice(1).split(/[&;]/)) {
    const eq = pair.indexOf('=');
    const override = overrideParamName(decodedParamName(eq === -1 ? pair : pair.slice(0, eq)));
    if (override !== undefined) return override;
  }
  return undefined;
}

/**
 * The method-override parameter a field name is, by its canonical name, once decoded
 * (percent-escapes and `+` already undone); undefined if none. Shared by the query
 * (above) and the request body (body-override.ts): PHP, Rack and the servlet containers
 * read a form field's name as they read a query parameter's.
 */
export function overrideParamName(decoded: string): string | undefined {
  // PHP registers the decoded name as a C string (strlen): `_method%00x` is `_method`.
  const name = cutAtNul(decoded).replace(/^ +/, '').toLowerCase();
  const bracket = name.indexOf('[');
  const candidates = bracket > 0 ? [name, name.slice(0, bracket)] : [name];
  // Rack 2 (Rails 6, 7.0) drops leading brackets: `[_method]` is `_method` there.
  if (name[0] === '[' || name[0] === ']') candidates.push(/^[[\]]*([^[\]]*)/.exec(name)![1]!);
  for (const n of candidates) {
    const canonical = n.replace(/[ .[\-]/g, '_');
    if (OVERRIDE_PARAMS.has(canonical)) return canonical;
  }
  return undefined;
}

/**
 * A query parameter's name as its readers decode it: `+` as a space, `%uXXXX` (IIS and
 * ASP.NET's UrlDecode), percent-escapes — escape by escape when the whole is not UTF-8 or
 * has a bad `%`, as PHP's php_url_decode does (a bad `%` left alone), so `_method%00%` is
 * still `_method` once cut at its NUL (compared as sent, it was once forwarded and ran as
 * the override). The NUL cut is the caller's (overrideParamName, withoutQueryParam).
 */
function decodedParamName(key: string): string {
  const name = key.replace(/\+/g, ' ').replace(/%u([0-9a-fA-F]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  try {
    return decodeURIComponent(name);
  } catch {
    return name.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  }
}

/** A name as PHP registers it: up to its first NUL. */
function cutAtNul(name: string): string {
  const nul = name.indexOf('\0');
  return nul === -1 ? name : name.slice(0, nul);
}

/**
 * The query with every parameter named `name` removed (the agent may not choose the key),
 * whether `&` or `;` separates it (Rack 2, Go's net/url before 1.17 and Python's parse_qs
 * before 3.9.2 split at both; a first-value reader would take the agent's). The other
 * parameters keep their separators.
 */
export function withoutQueryParam(query: string, name: string): string {
  if (!query) return '';
  const parts = query.slice(1).split(/([&;])/);
  let out = '';
  for (let i = 0; i < parts.length; i += 2) {
    const pair = parts[i]!;
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (cutAtNul(decodedParamName(eq === -1 ? pair : pair.slice(0, eq))) === name) continue;
    out += out === '' ? pair : `${parts[i - 1]}${pair}`;
  }
  return out ? `?${out}` : '';
}
