/**
 * The path a `request.denied` event records when the request never resolved to a route
 * (an unknown route, a malformed target): the whole path as the agent sent it, so a
 * typo'd base URL (`/opneai/v1/…`) or a probe shows up in the audit log. Only the path:
 * the query is dropped (it may carry a key the agent was given by mistake); every byte
 * outside printable ASCII, and the backslash, is percent-encoded so a log line cannot be
 * forged or garbled; at most MAX_AUDIT_PATH characters are kept, marked with `…`.
 * A target that is not origin-form (`http://user:pass@host/…`, `*`) is not recorded.
 */
export const MAX_AUDIT_PATH = 256;

export function auditPath(url: string | undefined): string | undefined {
  if (!url || url.charCodeAt(0) !== 47 /* / */) return undefined;
  const end = url.search(/[?#]/);
  const path = end === -1 ? url : url.slice(0, end);
  let out = '';
  for (const ch of path) {
    const c = ch.codePointAt(0)!;
    const piece = c >= 0x21 && c <= 0x7e && ch !== '\\' ? ch : c <= 0xff ? `%${c.toString(16).toUpperCase().padStart(2, '0')}` : encodeURIComponent(ch);
    if (out.length + piece.length > MAX_AUDIT_PATH) return `${out}…`;
    out += piece;
  }
  return out;
}
