/**
 * The values a credential source has held, for scrubbing upstream echoes
 * (docs/secret-hygiene.md). A value stays until its validity window ends — a lease's
 * expiry plus a grace for the upstream's clock, or never for sources without expiry — and
 * at most `limit` values are kept (newest first), so memory and the per-header scrubbing
 * cost stay bounded whatever an agent does to force rotations.
 */
export class ValueHistory {
  private entries: { value: string; until: number }[] = [];
  private snapshot: readonly string[] = [];
  private nextEndMs = Infinity;

  constructor(
    private readonly limit: number,
    private readonly graceMs = 0,
  ) {}

  /** Record a value held now; `expiresAtMs` undefined means it has no known end. */
  add(value: string, expiresAtMs: number | undefined): void {
    let until = expiresAtMs === undefined ? Infinity : expiresAtMs + this.graceMs;
    const seen = this.entries.findIndex((e) => e.value === value);
    // A value seen again (a file switched back) moves to the front with the later end.
    if (seen !== -1) until = Math.max(until, this.entries.splice(seen, 1)[0]!.until);
    this.entries.unshift({ value, until });
    if (this.entries.length > this.limit) this.entries.length = this.limit;
    this.settle();
  }

  /**
   * The values still within their window at `nowMs`, newest first. The same array is
   * returned while the set is unchanged, so callers can cache what they build from it.
   */
  values(nowMs: number): readonly string[] {
    if (nowMs >= this.nextEndMs) {
      this.entries = this.entries.filter((e) => e.until > nowMs);
      this.settle();
    }
    return this.snapshot;
  }

  clear(): void {
    this.entries = [];
    this.settle();
  }

  private settle(): void {
    this.snapshot = Object.freeze(this.entries.map((e) => e.value));
    this.nextEndMs = this.entries.reduce((min, e) => Math.min(min, e.until), Infinity);
  }
}

/**
 * Leases kept per route. Normal rotation at ½ TTL holds two or three at once; the rest is
 * room for forced refreshes (upstream 401/403s) within one lease lifetime. Past it the
 * oldest still-valid value is no longer scrubbed (beyond the one a request carried).
 */
export const LEASE_VALUES_KEPT = 32;
/**
 * A lease's expiry is estimated from when it was requested (early by the round trip) and
 * upstreams often accept tokens a little past `exp` (JWT validators' usual leeway is 60 s).
 */
export const LEASE_EXPIRY_GRACE_MS = 60_000;
/**
 * File values have no expiry leash can know, so the last few are kept for good: enough
 * for rotations during one slow request, bounded because every header is searched for each.
 */
export const FILE_VALUES_KEPT = 8;
