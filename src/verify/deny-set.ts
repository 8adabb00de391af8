import { ALL_TARGET, type Revocation } from '../core/protocol.js';

/**
 * The verifier's revocation deny-set (DESIGN §7 applied to tokens):
 *   lease       deny the token whose jti is the lease id;
 *   instance    deny tokens with sub = target and iat ≤ the revocation's time;
 *   credential  deny tokens with leash_cred = target and iat ≤ the revocation's time, and
 *               tokens without leash_cred (an authority that predates it: what they are a
 *               lease of cannot be told) issued ≤ the latest credential revocation's time;
 *   all         deny every token with iat ≤ the revocation's time;
 *   (unknown)   a newer leash's revocation this version cannot read: as `all`.
 * `iat` has one-second precision: unless the token also carries `leash_iat_ms`, a token
 * issued in the same second as a revocation, even just after it, counts as issued before
 * it (fail closed).
 * An entry is kept for retainMs after its revocation time (the longest a token issued
 * before it can live), then dropped: nothing it could deny is still valid.
 */
export interface Denied {
  /** `unknown`: a newer leash's revocation this version cannot read, applied as `all`; `gap`: revocations may have been lost. */
  scope: Revocation['scope'] | 'gap' | 'unknown';
  target: string;
  id: string;
}

interface Cutoff {
  /** Tokens issued (ms) at or before atMs are denied. */
  atMs: number;
  untilMs: number;
  id: string;
}

/** The furthest in the future a revocation's `at` is taken to be (a real one is at most a clock skew ahead). */
export const MAX_FUTURE_MS = 5 * 60_000;

export class DenySet {
  private readonly leases = new Map<string, { untilMs: number; id: string }>();
  private readonly instances = new Map<string, Cutoff>();
  private readonly credentials = new Map<string, Cutoff>();
  private all: (Cutoff & { scope: 'all' | 'gap' | 'unknown' }) | undefined;
  /** The latest credential revocation of any name: a token without leash_cred falls under it. */
  private anyCredential: (Cutoff & { target: string }) | undefined;
  private lastPrune = 0;

  constructor(
    private readonly retainMs: number,
    private readonly now: () => number,
  ) {}

  apply(r: Revocation): void {
    const now = this.now();
    // Pruned here too, not only by check(): a verifier that checks no token for a while
    // still receives revocations, and kept every one of them until its next check.
    if (now - this.lastPrune > 60_000) this.prune(now);
    // A time past now + MAX_FUTURE_MS is no clock's skew: taken as now + MAX_FUTURE_MS, so
    // one forged `all` at 9999-01-01 cannot deny every token issued until a restart.
    const atMs = Math.min(Date.parse(r.at), now + MAX_FUTURE_MS);
    const entry: Cutoff = { atMs, untilMs: atMs + this.retainMs, id: r.id };
    if (entry.untilMs <= now) return; // too old to matter (a catch-up of an old entry)
    switch (r.scope) {
      case 'lease': {
        // The entry that lasts longest: an earlier one for the same lease (a forged old
        // `at`) must not end the denial before the real revocation's retention does.
        const had = this.leases.get(r.target);
        if (!had || had.untilMs < entry.untilMs) this.leases.set(r.target, { untilMs: entry.untilMs, id: r.id });
        break;
      }
      case 'instance':
        later(this.instances, r.target, entry);
        break;
      case 'credential':
        later(this.credentials, r.target, entry);
        if (!this.anyCredential || this.anyCredential.atMs < atMs) this.anyCredential = { ...entry, target: r.target };
        break;
      case 'all':
        // Also a revocation this version cannot read (core/protocol.ts parseRevocation): fail closed.
        if (!this.all || this.all.atMs < atMs) this.all = { ...entry, scope: r.notUnderstood ? 'unknown' : 'all' };
        break;
    }
  }

  /** Revocations may have been lost (stream gap): deny everything issued up to `atMs`. */
  failClosed(atMs: number): void {
    if (!this.all || this.all.atMs < atMs) this.all = { atMs, untilMs: atMs + this.retainMs, id: 'gap', scope: 'gap' };
  }

  check(t: { jti: string; sub: string; credential: string | undefined; issuedMs: number }): Denied | undefined {
    const now = this.now();
    if (now - this.lastPrune > 60_000) this.prune(now);
    const issuedMs = t.issuedMs;
    const live = (c: { untilMs: number } | undefined) => c !== undefined && c.untilMs > now;
    const lease = this.leases.get(t.jti);
    if (live(lease)) return { scope: 'lease', target: t.jti, id: lease!.id };
    const inst = this.instances.get(t.sub);
    if (live(inst) && issuedMs <= inst!.atMs) return { scope: 'instance', target: t.sub, id: inst!.id };
    if (t.credential !== undefined) {
      const cred = this.credentials.get(t.credential);
      if (live(cred) && issuedMs <= cred!.atMs) return { scope: 'credential', target: t.credential, id: cred!.id };
    } else if (live(this.anyCredential) && issuedMs <= this.anyCredential!.atMs) {
      // No leash_cred: it may be a lease of the revoked credential; fail closed.
      return { scope: 'credential', target: this.anyCredential!.target, id: this.anyCredential!.id };
    }
    if (live(this.all) && issuedMs <= this.all!.atMs) return { scope: this.all!.scope, target: ALL_TARGET, id: this.all!.id };
    return undefined;
  }

  /** Entries held (for diagnostics and tests). */
  get size(): number {
    return this.leases.size + this.instances.size + this.credentials.size + (this.all ? 1 : 0);
  }

  prune(now = this.now()): void {
    this.lastPrune = now;
    for (const m of [this.leases, this.instances, this.credentials] as Map<string, { untilMs: number }>[]) {
      for (const [k, v] of m) if (v.untilMs <= now) m.delete(k);
    }
    if (this.all && this.all.untilMs <= now) this.all = undefined;
    if (this.anyCredential && this.anyCredential.untilMs <= now) this.anyCredential = undefined;
  }
}

function later(map: Map<string, Cutoff>, key: string, entry: Cutoff): void {
  const had = map.get(key);
  if (!had || had.atMs < entry.atMs) map.set(key, entry);
}
