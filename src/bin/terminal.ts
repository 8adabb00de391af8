/**
 * Text the CLI prints that came from elsewhere (the authority, the audit stream, a
 * sidecar's /status), made safe for a terminal: C0 and C1 control characters and DEL
 * become "?". An escape sequence in a path an agent requested, or in a field someone wrote
 * to Redis, could otherwise retitle the terminal, recolour it, or conceal the lines after
 * it (an "ANOMALY" line included); a newline would forge a line of its own.
 */
export function printable(v: unknown): string {
  return String(v).replace(UNPRINTABLE, '?');
}

/**
 * C0/C1 controls, DEL, and the invisible or reordering format characters (zero-width,
 * bidi embeddings/overrides/isolates, line/paragraph separators, BOM): a path or field
 * holding them can look like another, or reorder the line it is printed in.
 */
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g;
const UNPRINTABLE_IN_JSON = /[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g;

/**
 * `--json` output: JSON.stringify escapes C0 controls but writes C1 controls (U+009B is
 * CSI to terminals that take 8-bit controls) and bidi/zero-width characters as they are.
 * They only occur inside strings, so escaping them keeps the JSON and its values the same.
 */
export function jsonText(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(UNPRINTABLE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** An ISO time for a stored millisecond count, or "?" for one Date cannot hold (a corrupt record is not a crash). */
export function isoOf(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '?' : d.toISOString();
}
