import { isReadableAuditVersion, parseAuditEntry, type AuditEntry } from '../core/protocol.js';

/**
 * `anomaly.cloned_credential` found continuously (docs/anomalies.md): a lease is issued to
 * one instance, so the same lease id in `usage` summaries from two instances means its
 * value was copied out and is used elsewhere. No sidecar can see it; the authority reads the
 * shared audit stream as it grows. Keyed by lease id, not fingerprint, as `leash scopes`:
 * a static issuer hands one value to many instances under separate leases.
 *
 * Memory is bounded: at most `maxLeases` lease ids (the one seen longest ago forgotten
 * first) with at most MAX_INSTANCES instances each; a lease is reported once.
 */
export interface ClonedLease {
  lease: string;
  /** The instances seen using it, in the order seen (at least two). */
  instances: string[];
  fingerprint?: string;
  /** The sidecar's label for the route's credential (`lease:NAME`), as written: untrusted. */
  credentialLabel?: string;
}

const MAX_INSTANCES = 16;

export class ClonedLeaseWatcher {
  private readonly leases = new Map<string, { instances: string[]; reported: boolean }>();

  constructor(private readonly maxLeases = 10_000) {}

  /** Entries oldest first; returns the leases seen on a second instance for the first time. */
  observe(entries: readonly AuditEntry[]): ClonedLease[] {
    const found: ClonedLease[] = [];
    for (const e of entries) {
      if (e.event !== 'usage' || !e.lease || !e.instance || !isReadableAuditVersion(e)) continue;
      let l = this.leases.get(e.lease);
      if (l) this.leases.delete(e.lease);
      else {
        l = { instances: [], reported: false };
        if (this.leases.size >= this.maxLeases) this.leases.delete(this.leases.keys().next().value!);
      }
      this.leases.set(e.lease, l);
      if (!l.instances.includes(e.instance) && l.instances.length < MAX_INSTANCES) l.instances.push(e.instance);
      if (l.instances.length > 1 && !l.reported) {
        l.reported = true;
        found.push({ lease: e.lease, instances: [...l.instances], fingerprint: e.fingerprint, credentialLabel: e.credential });
      }
    }
    return found;
  }
}

/** The Redis calls the scan makes. */
export interface StreamReader {
  xrange(key: string, start: string, end: string, count: 'COUNT', n: number): Promise<unknown>;
}

/**
 * Reads what the stream gained since the last call (the first call: the last `lookbackMs`,
 * by the entries' ids), at most `maxPerScan` entries a call, oldest first, and feeds it to
 * the watcher. A scan that falls behind by more than that resumes where it stopped.
 */
export function clonedLeaseScan(o: { redis: StreamReader; key: string; watcher: ClonedLeaseWatcher; nowMs: () => number; lookbackMs: number; page?: number; maxPerScan?: number }) {
  const page = o.page ?? 1_000;
  const maxPerScan = o.maxPerScan ?? 20_000;
  let start: string | undefined;
  return async (): Promise<ClonedLease[]> => {
    start ??= `${Math.max(0, Math.floor(o.nowMs() - o.lookbackMs))}-0`;
    const found: ClonedLease[] = [];
    for (let read = 0; read < maxPerScan; ) {
      const entries = (await o.redis.xrange(o.key, start, '+', 'COUNT', page)) as Array<[string, string[]]>;
      if (entries.length === 0) break;
      found.push(...o.watcher.observe(entries.map(([id, fields]) => parseAuditEntry(id, fields))));
      start = `(${entries[entries.length - 1]![0]}`;
      read += entries.length;
      if (entries.length < page) break;
    }
    return found;
  };
}
