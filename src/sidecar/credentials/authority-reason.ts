import { looksLikeSecret } from '../../config/secret-shape.js';

/**
 * The authority's own words for a refusal (`{"error":{"message"}}` of a 4xx), made safe
 * to put in a log line, an audit event and the /readyz body (which the agent can read).
 * It is authority-authored text, so it is treated as untrusted: only printable ASCII is
 * kept (control, format and bidi characters become spaces), whitespace is collapsed, any
 * word shaped like a secret or a join token is replaced by `[redacted]`, and it is cut to
 * MAX_REASON characters. Anything that is not a string gives nothing.
 */
export const MAX_REASON = 160;

/** Runs of characters between separators: each is judged alone (a secret inside quotes or after `=` is still one run). */
const WORD = /[^\s"'`,;()<>[\]{}=]+/g;

export function authorityReason(body: unknown): string | undefined {
  const message = (body as { error?: { message?: unknown } } | null | undefined)?.error?.message;
  if (typeof message !== 'string') return undefined;
  // Bounded before any regex runs over it: the body itself is at most 64 KiB, this far less.
  const printable = message
    .slice(0, MAX_REASON * 4)
    .replace(/[^\x20-\x7e]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  const redacted = printable.replace(WORD, (w) => (looksLikeSecret(w) || /^leash_jt_/i.test(w) ? '[redacted]' : w));
  if (!redacted) return undefined;
  return redacted.length > MAX_REASON ? `${redacted.slice(0, MAX_REASON - 1)}…` : redacted;
}
