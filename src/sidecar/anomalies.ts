import type { Clock } from '../core/clock.js';

/**
 * Anomaly detection in the sidecar (docs/anomalies.md): pure decisions over what the proxy
 * already knows about each request, on an injected clock. The detector returns what to
 * report; the sidecar turns that into audit events and `leash_anomalies_total`. Memory is
 * bounded by the limits below, whatever the agent sends.
 */
export const ANOMALY_KINDS = ['new_operation', 'non_loopback_client', 'auth_failure_burst'] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

export interface AnomalyPolicy {
  /** Operations seen in this long after start are learned silently; later new ones are reported. */
  readonly learningWindowMs: number;
  /** A non-loopback client address is reported at most once per this window. */
  readonly clientWindowMs: number;
  /** `count` upstream 401/403 on one route within `windowMs` is a burst (one event per burst). */
  readonly authFailureBurst: { readonly count: number; readonly windowMs: number };
  /** Bounds: operations remembered, client addresses remembered. */
  readonly maxOperations: number;
  readonly maxClients: number;
}

export const DEFAULT_ANOMALY_POLICY: AnomalyPolicy = {
  learningWindowMs: 600_000,
  clientWindowMs: 3_600_000,
  authFailureBurst: { count: 5, windowMs: 60_000 },
  maxOperations: 10_000,
  maxClients: 1_000,
};

export type Anomaly =
  | { kind: 'new_operation'; route: string; credential: string; method: string; rule: string }
  | { kind: 'non_loopback_client'; route: string | undefined; client: string }
  | { kind: 'auth_failure_burst'; route: string; count: number; windowMs: number };

/** What the detector needs of one finished request. `rule` is the allow rule that matched (undefined when refused). */
export interface ObservedRequest {
  route: string | undefined;
  credential: string | undefined;
  method: string;
  rule: string | undefined;
  remote: string | undefined;
}

/**
 * 127.0.0.0/8, ::1 and their IPv4-mapped forms. An address Node could not give (the
 * socket already gone) is not reported: there is nothing to name.
 */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined || address === '') return true;
  if (address.startsWith('127.') || address === '::1') return true;
  if (address.startsWith('::ffff:')) return address.startsWith('::ffff:127.');
  return false;
}

interface BurstState {
  /** Failure instants within the window, oldest first (at most `count`). */
  times: number[];
  /** While now < this, the burst already reported goes on: no new event, the window extends. */
  burstUntil: number;
}

export class AnomalyDetector {
  private readonly startedAt: number;
  /**
   * (credential, method, rule) seen, as credential → method → rules: three lookups of
   * strings that are the same objects on every request (their hashes cached), no key string
   * built per request. Bounded by maxOperations (`operationCount` of them in all).
   */
  private readonly operations = new Map<string, Map<string, Set<string>>>();
  private operationCount = 0;
  /** Non-loopback client → when it was last reported; oldest evicted past maxClients. */
  private readonly clients = new Map<string, number>();
  private readonly bursts = new Map<string, BurstState>();
  /** Operations not remembered because the table was full (they are not reported either). */
  untracked = 0;

  constructor(
    private readonly clock: Clock,
    private readonly policy: AnomalyPolicy = DEFAULT_ANOMALY_POLICY,
  ) {
    this.startedAt = clock.monotonicMs();
  }

  /**
   * One finished request. The common case (a loopback client, a known operation) costs
   * two string tests and three Map/Set lookups.
   */
  request(r: ObservedRequest): Anomaly[] | undefined {
    let out: Anomaly[] | undefined;
    if (!isLoopback(r.remote)) {
      const a = this.client(r.route, r.remote!);
      if (a) (out ??= []).push(a);
    }
    if (r.rule !== undefined && r.route !== undefined && r.credential !== undefined) {
      let byMethod = this.operations.get(r.credential);
      let rules = byMethod?.get(r.method);
      if (rules === undefined || !rules.has(r.rule)) {
        if (this.operationCount >= this.policy.maxOperations) this.untracked++;
        else {
          if (byMethod === undefined) this.operations.set(r.credential, (byMethod = new Map()));
          if (rules === undefined) byMethod.set(r.method, (rules = new Set()));
          rules.add(r.rule);
          this.operationCount++;
          // Learned silently while the window lasts: the first requests are the baseline.
          if (this.clock.monotonicMs() - this.startedAt >= this.policy.learningWindowMs) {
            (out ??= []).push({ kind: 'new_operation', route: r.route, credential: r.credential, method: r.method, rule: r.rule });
          }
        }
      }
    }
    return out;
  }

  private client(route: string | undefined, client: string): Anomaly | undefined {
    const now = this.clock.monotonicMs();
    const last = this.clients.get(client);
    if (last !== undefined && now - last < this.policy.clientWindowMs) return undefined;
    // Re-inserted so Map order is oldest-reported first; the oldest goes when full.
    this.clients.delete(client);
    if (this.clients.size >= this.policy.maxClients) this.clients.delete(this.clients.keys().next().value!);
    this.clients.set(client, now);
    return { kind: 'non_loopback_client', route, client };
  }

  /** An upstream 401/403 on a route: a burst is reported once, and lasts until a quiet window. */
  authFailure(route: string): Anomaly | undefined {
    const now = this.clock.monotonicMs();
    const { count, windowMs } = this.policy.authFailureBurst;
    let s = this.bursts.get(route);
    if (!s) this.bursts.set(route, (s = { times: [], burstUntil: -Infinity }));
    if (now < s.burstUntil) {
      s.burstUntil = now + windowMs;
      return undefined;
    }
    s.times.push(now);
    while (s.times.length > 0 && now - s.times[0]! >= windowMs) s.times.shift();
    if (s.times.length > count) s.times.shift();
    if (s.times.length < count) return undefined;
    s.times = [];
    s.burstUntil = now + windowMs;
    return { kind: 'auth_failure_burst', route, count, windowMs };
  }
}
