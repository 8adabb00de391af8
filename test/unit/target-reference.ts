// The parseTarget implementation before its fast path (commit 3ecac3e), kept verbatim as the reference for target-fast-path.test.ts.
import { BadRequestError, NoRouteError } from '../../src/core/errors.js';

/**
 * The request target, parsed and normalised once (DESIGN §5). The upstream URL is never
 * built with `new URL(req.url, base)`: that resolves `//evil/x`, `http://evil/x` and
 * `/\evil/x` to host `evil` (PITFALLS.md). Only origin-form targets are accepted; each
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
// `..;x` is `..` to servlet containers.
const DOT_SEGMENT = /^\.\.?(?:;.*)?$/;

export function parseTargetReference(url: string): Target | BadRequestError | NoRouteError {
  if (url.charCodeAt(0) !== 47 /* / */) {
    return new BadRequestError('only origin-form request targets ("/route/...") are accepted');
  }
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
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
    }
    if (DOT_SEGMENT.test(d)) return new BadRequestError('the path contains a dot-segment ("." or "..")');
    decoded[i] = d;
  }
  if (decoded.length === 0) return new NoRouteError('no route: the path must start with "/<route>/"');
  const rest = raw.slice(1);
  const trailing = rest.length > 0 && path.endsWith('/') ? '/' : '';
  return { route: decoded[0]!, segments: decoded.slice(1), rawPath: `/${rest.join('/')}${trailing}`, query };
}
