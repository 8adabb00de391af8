/**
 * Per-request use, summarised for the audit stream (docs/audit.md, `usage`): the hot path
 * adds a request to a Map keyed by one cheap string; a flush turns the Map into entries.
 * Pure: no timers, no I/O — the writer (usage-writer.ts) owns those.
 */

/** What one finished request contributes. */
export interface UsageRequest {
  route: string | undefined;
  method: string;
  path: string | undefined;
  status: number;
  lease: string | undefined;
  fingerprint: string | undefined;
  /** The refusal code when leash refused the request (it was not forwarded). */
  denied: string | undefined;
}

/** One summary: the key's values, how many requests, first and last wall-clock ms. */
export interface UsageSummary {
  route: string | undefined;
  method: string | undefined;
  path: string;
  status: string | undefined;
  lease: string | undefined;
  fingerprint: string | undefined;
  denied: string | undefined;
  count: number;
  firstMs: number;
  lastMs: number;
}

export const MAX_USAGE_PATH = 256;
export const OTHER_PATH = '(other)';
export const NO_ROUTE = '(none)';

const CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** `2xx` for 200…299; anything outside 100…599 is `0xx` (a connection closed before an answer). */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? CLASSES[(status / 100) | 0]! : '0xx';
}

/** A path as summarised: at most MAX_USAGE_PATH characters, cut ones marked `…`. */
export function usagePath(path: string | undefined): string {
  if (path === undefined) return '';
  return path.length > MAX_USAGE_PATH ? `${path.slice(0, MAX_USAGE_PATH - 1)}…` : path;
}

/**
 * Counts requests per key between flushes. At most `maxKeys` distinct keys: requests with
 * a new key beyond that go to one `(other)` summary, so a probe of random paths costs
 * bounded memory. `add` is the hot path: seven comparisons when the request repeats the
 * one before, else one template string and one Map lookup.
 */
export class UsageAggregator {
  private map = new Map<string, UsageSummary>();
  private other: UsageSummary | undefined;
  /** Keys of refused requests in `map`: at most half of maxKeys, so refused junk (free for an agent) cannot crowd out forwarded use. */
  private refusedKeys = 0;
  /**
   * The last request's key parts and its summary: an agent's requests mostly repeat the
   * one before (a loop over one endpoint), and comparing seven references is cheaper than
   * building and hashing the key string (bench/RESULTS.md, sixteenth session).
   */
  private readonly last: Omit<UsageRequest, 'status'> & { cls: number; summary: UsageSummary | undefined } = {
    route: undefined,
    method: '',
    path: undefined,
    lease: undefined,
    fingerprint: undefined,
    denied: undefined,
    cls: -1,
    summary: undefined,
  };

  constructor(private readonly maxKeys = 1_000) {}

  add(r: UsageRequest, nowMs: number): void {
    const cls = r.status < 600 ? (r.status / 100) | 0 : 0;
    const l = this.last;
    if (l.summary !== undefined && l.path === r.path && l.lease === r.lease && l.route === r.route && l.method === r.method && l.cls === cls && l.denied === r.denied && l.fingerprint === r.fingerprint) {
      l.summary.count++;
      l.summary.lastMs = nowMs;
      return;
    }
    // \n cannot occur in any of these (paths are percent-encoded, methods are tokens).
    const key = `${r.lease}\n${r.fingerprint}\n${r.route}\n${r.method}\n${cls}\n${r.denied}\n${r.path}`;
    const s = this.map.get(key);
    if (s) {
      s.count++;
      s.lastMs = nowMs;
      this.remember(r, cls, s);
      return;
    }
    if (this.map.size >= this.maxKeys || (r.denied !== undefined && this.refusedKeys >= this.maxKeys >> 1)) {
      this.addOther(1, nowMs, nowMs);
      return;
    }
    if (r.denied !== undefined) this.refusedKeys++;
    const summary: UsageSummary = {
      route: r.route ?? NO_ROUTE,
      method: r.method,
      path: usagePath(r.path),
      status: statusClass(r.status),
      lease: r.lease,
      fingerprint: r.fingerprint,
      denied: r.denied,
      count: 1,
      firstMs: nowMs,
      lastMs: nowMs,
    };
    this.map.set(key, summary);
    this.remember(r, cls, summary);
  }

  /** The shortcut's one object, overwritten in place (no allocation per request). */
  private remember(r: UsageRequest, cls: number, summary: UsageSummary): void {
    const l = this.last;
    l.route = r.route;
    l.method = r.method;
    l.path = r.path;
    l.lease = r.lease;
    l.fingerprint = r.fingerprint;
    l.denied = r.denied;
    l.cls = cls;
    l.summary = summary;
  }

  private addOther(count: number, firstMs: number, lastMs: number): void {
    const o = (this.other ??= { route: undefined, method: undefined, path: OTHER_PATH, status: undefined, lease: undefined, fingerprint: undefined, denied: undefined, count: 0, firstMs, lastMs });
    o.count += count;
    o.firstMs = Math.min(o.firstMs, firstMs);
    o.lastMs = Math.max(o.lastMs, lastMs);
  }

  /** Requests counted since the last take. */
  get size(): number {
    return this.map.size + (this.other ? 1 : 0);
  }

  /**
   * The summaries since the last take, and a fresh start. With `budget` (entries the
   * stream may take now), at most `budget` summaries come out: the excess is folded into
   * the `(other)` one (which is then the last), so the counts stay exact.
   */
  take(budget = Infinity): UsageSummary[] {
    const out = [...this.map.values()];
    const other = this.other;
    this.map = new Map();
    this.other = undefined;
    this.refusedKeys = 0;
    this.last.summary = undefined;
    return foldToBudget(out, other, budget);
  }
}

/**
 * Pure: `summaries` (+ `other`) cut to at most max(1, budget) entries, the excess folded into
 * `(other)`. Forwarded use is kept before refused requests: the agent chooses the order in
 * which keys arrive, and refused ones cost it nothing (it could otherwise have its real use
 * folded away by sending junk first).
 */
export function foldToBudget(summaries: UsageSummary[], other: UsageSummary | undefined, budget: number): UsageSummary[] {
  const total = summaries.length + (other ? 1 : 0);
  if (total <= budget) return other ? [...summaries, other] : summaries;
  if (summaries.some((s) => s.denied !== undefined)) summaries = [...summaries.filter((s) => s.denied === undefined), ...summaries.filter((s) => s.denied !== undefined)];
  const keep = Math.max(0, Math.floor(budget) - 1);
  const folded: UsageSummary = other ? { ...other } : { route: undefined, method: undefined, path: OTHER_PATH, status: undefined, lease: undefined, fingerprint: undefined, denied: undefined, count: 0, firstMs: Infinity, lastMs: -Infinity };
  for (const s of summaries.slice(keep)) {
    folded.count += s.count;
    folded.firstMs = Math.min(folded.firstMs, s.firstMs);
    folded.lastMs = Math.max(folded.lastMs, s.lastMs);
  }
  return [...summaries.slice(0, keep), folded];
}

/** A summary as stream fields (docs/audit.md): strings, absent values left out. */
export function usageFields(s: UsageSummary, instance: string, credential: string | undefined, atMs: number): string[] {
  const flat = ['event', 'usage', 'at', new Date(atMs).toISOString(), 'v', '1', 'instance', instance];
  if (s.route !== undefined) flat.push('route', s.route);
  if (credential !== undefined) flat.push('credential', credential);
  if (s.lease !== undefined) flat.push('lease', s.lease);
  if (s.fingerprint !== undefined) flat.push('fingerprint', s.fingerprint);
  if (s.method !== undefined) flat.push('method', s.method);
  flat.push('path', s.path);
  if (s.status !== undefined) flat.push('status', s.status);
  if (s.denied !== undefined) flat.push('denied', s.denied);
  flat.push('count', String(s.count), 'first', new Date(s.firstMs).toISOString(), 'last', new Date(s.lastMs).toISOString());
  return flat;
}
