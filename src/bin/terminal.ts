/**
 * Text the CLI prints that came from elsewhere (the authority, the audit stream, a
 * sidecar's /status), made safe for a terminal: C0 and C1 control characters and DEL
 * become "?". An escape sequence in a path an agent requested, or in a field someone wrote
 * to Redis, could otherwise retitle the terminal, recolour it, or conceal the lines after
 * it (an "ANOMALY" line included); a newline would forge a line of its own.
 */
export function printable(v: unknown): string {
  return String(v).replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

/** An ISO time for a stored millisecond count, or "?" for one Date cannot hold (a corrupt record is not a crash). */
export function isoOf(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '?' : d.toISOString();
}
