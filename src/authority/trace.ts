import { isReadableAuditVersion, type AuditEntry, type LeaseRecord, type TraceHolder, type TraceOperation } from '../core/protocol.js';
import type { AuditEvent } from '../telemetry/audit.js';

/**
 * `leash trace` from the audit stream (docs/audit.md), pure: the entries naming a
 * fingerprint, then those naming one of its lease ids (`usage` summaries name the lease;
 * local-source ones only the fingerprint).
 */
export function selectTraceEntries(fingerprint: string, entries: readonly AuditEntry[], activeLeaseIds: Iterable<string> = []): AuditEntry[] {
  const leases = new Set(activeLeaseIds);
  for (const e of entries) if ((e.fingerprint === fingerprint || e.previousFingerprint === fingerprint) && e.lease && e.event !== 'credential.rotated') leases.add(e.lease);
  // A rotation's `lease` is the new value's lease: it belongs to the old value only via previousFingerprint.
  for (const e of entries) if (e.event === 'credential.rotated' && e.fingerprint === fingerprint && e.lease) leases.add(e.lease);
  return entries.filter((e) => e.fingerprint === fingerprint || e.previousFingerprint === fingerprint || (e.lease !== undefined && leases.has(e.lease)));
}

/** Lifecycle events (every key an AuditEvent) and the holder field each one dates. */
const LIFECYCLE: Readonly<Record<string, keyof TraceHolder>> = {
  'lease.issued': 'issued',
  'credential.acquired': 'acquired',
  'credential.rotated': 'rotated',
  'lease.released': 'released',
  'lease.revoked': 'revoked',
  'credential.revoked': 'revoked',
  'credential.expired': 'expired',
} satisfies Partial<Record<AuditEvent, keyof TraceHolder>>;

/**
 * Who held the value (one row per lease, or per instance for a local source) with its
 * lifecycle times, and the operations done with it: `usage` summaries added up per
 * (lease, instance, route, method, path, status, denied), first/last over all flushes.
 */
export function summariseTrace(fingerprint: string, leases: LeaseRecord[], events: readonly AuditEntry[]): { holders: TraceHolder[]; operations: TraceOperation[] } {
  const holders = new Map<string, TraceHolder>();
  const holder = (lease: string | undefined, instance: string | undefined): TraceHolder => {
    const key = lease ?? `instance:${instance ?? ''}`;
    let h = holders.get(key);
    if (!h) holders.set(key, (h = { lease, instances: [] }));
    if (instance && !h.instances.includes(instance)) h.instances.push(instance);
    return h;
  };
  for (const l of leases) {
    const h = holder(l.id, l.instance);
    h.credential ??= l.credential;
    h.issued ??= new Date(l.issuedAtMs).toISOString();
    h.expires = new Date(l.expiresAtMs).toISOString();
  }
  const ops = new Map<string, TraceOperation>();
  for (const e of events) {
    // A newer schema (docs/audit.md: fields change meaning only with a new `v`) is not read
    // as this one: listed among the events as written, never added up or taken for a time.
    if (!isReadableAuditVersion(e)) continue;
    // The rotation that replaced this value (previousFingerprint) ends its use; its lease is the next value's.
    const replaced = e.event === 'credential.rotated' && e.previousFingerprint === fingerprint && e.fingerprint !== fingerprint;
    const lease = replaced ? undefined : e.lease;
    if (e.event === 'usage') {
      const key = [lease, e.instance, e.route, e.method, e.path, e.status, e.denied].join('\n');
      const n = Number(e.count);
      const count = Number.isSafeInteger(n) && n > 0 ? n : 0;
      const o = ops.get(key);
      if (o) {
        o.count += count;
        if (e.first && e.first < o.first) o.first = e.first;
        if (e.last && e.last > o.last) o.last = e.last;
      } else {
        ops.set(key, { lease, instance: e.instance, route: e.route, method: e.method, path: e.path ?? '', status: e.status, denied: e.denied, count, first: e.first ?? '', last: e.last ?? '' });
      }
      holder(lease, e.instance);
      continue;
    }
    if (replaced) {
      const h = [...holders.values()].reverse().find((x) => x.instances.includes(e.instance ?? '') && x.replaced === undefined) ?? holder(undefined, e.instance);
      h.replaced ??= e.at;
      continue;
    }
    const field = LIFECYCLE[e.event ?? ''];
    const h = holder(lease, e.event?.startsWith('lease.') ? (e.identity ?? e.instance) : e.instance);
    // The authority names the credential; a sidecar's `lease:NAME` only until then (never `lease:sha256:…`, an unconfirmed name).
    if (e.credential && e.event?.startsWith('lease.')) h.credential = e.credential;
    else if (e.credential && !e.credential.startsWith('lease:sha256:')) h.credential ??= e.credential.replace(/^lease:/, '');
    if (field && e.at) (h as unknown as Record<string, string>)[field] ??= e.at;
  }
  return { holders: [...holders.values()], operations: [...ops.values()].map((o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as unknown as TraceOperation) };
}
