import { firstMatch, parseRule, tunnelSegment, type AllowRule } from '../config/rules.js';
import { isReadableAuditVersion, type AuditEntry } from '../core/protocol.js';

/**
 * `leash scopes` analysis (docs/operations.md): a pure function over audit stream entries
 * (the sidecars' `usage` summaries, docs/audit.md) and, when given, the routes' allow
 * lists. Reports per route and credential what was used, the allow rules never matched,
 * the narrowest allow list covering what was used, the credentials never used, and leases
 * reported in use by more than one instance (`anomaly.cloned_credential`).
 */

export interface RouteAllow {
  /** The route's credential as the sidecar labels it: lease name, `env:NAME` or `file:PATH`. */
  readonly credential: string;
  readonly allow: readonly AllowRule[];
}

export interface Operation {
  method: string;
  path: string;
  /** The allow rule it matched: the entry's `rule` if it carries one, else the first match in the config given. */
  rule: string | undefined;
  count: number;
  /** Requests by status class (`2xx`, …). */
  statuses: Record<string, number>;
}

export interface RouteScope {
  route: string;
  credential: string;
  /** In the config given (undefined without one). */
  configured: boolean | undefined;
  requests: number;
  operations: Operation[];
  /** Rules of the route's allow list no request matched (undefined without a config). */
  rulesNeverMatched: string[] | undefined;
  /** The narrowest rules that still allow every operation seen. */
  narrowest: string[];
}

export interface ClonedCredential {
  event: 'anomaly.cloned_credential';
  lease: string;
  fingerprint: string | undefined;
  credential: string | undefined;
  instances: string[];
}

export interface ScopesReport {
  routes: RouteScope[];
  /** Configured (or acquired, per the stream) credentials with no forwarded request. */
  unused: Array<{ route: string; credential: string }>;
  cloned: ClonedCredential[];
  /**
   * Requests not attributable to a route's operations: refused, overflow `(other)`, no
   * route; and `newer`: entries of an audit schema newer than this leash reads (docs/audit.md),
   * not read at all (their fields may mean something else: a refusal read as a forwarded
   * request would widen the suggested allow list).
   */
  skipped: { denied: number; overflow: number; noRoute: number; newer: number };
}

const NO_ROUTE = '(none)';

/** The route's config, if `routes` has one of that name: never an Object.prototype member (a stream entry's `route: "constructor"` crashed the report). */
const configOf = (routes: Readonly<Record<string, RouteAllow>> | undefined, route: string): RouteAllow | undefined =>
  routes !== undefined && Object.hasOwn(routes, route) ? routes[route] : undefined;
const OVERFLOW = '(other)';

const segmentsOf = (path: string): string[] =>
  path === '/' || path === ''
    ? []
    : path
        .slice(1)
        .split('/')
        .map((s) => {
          try {
            return decodeURIComponent(s);
          } catch {
            return s;
          }
        });

/** A segment usable literally in a rule (rules.ts parseRule): else it must become `*`. */
const literal = (s: string) => s !== '' && s !== '.' && s !== '..' && !s.includes('*') && !/\s/.test(s);

/**
 * The narrowest rules covering the operations: grouped by method and segment count, each
 * position is the one value all share, else `*`. Only real rules come out (parseRule
 * accepts each), sorted.
 */
export function narrowestRules(ops: ReadonlyArray<{ method: string; path: string }>): string[] {
  const groups = new Map<string, string[][]>();
  for (const op of ops) {
    const segs = segmentsOf(op.path);
    // A tunnel endpoint is only allowed by a rule that names it (rules.ts): grouped by it, so it stays literal.
    const tunnels = op.method === 'GET' || op.method === 'HEAD' ? '' : segs.map((s) => (tunnelSegment(s) === undefined ? '' : s)).join('/').replace(/^\/*$/, '');
    const key = `${op.method} ${segs.length}${tunnels ? ` ${tunnels}` : ''}`;
    const g = groups.get(key);
    if (g) g.push(segs);
    else groups.set(key, [segs]);
  }
  const out = new Set<string>();
  for (const [key, paths] of groups) {
    const method = key.slice(0, key.indexOf(' '));
    const first = paths[0]!;
    const pattern = first.map((s, i) => (literal(s) && paths.every((p) => p[i] === s) ? s : '*'));
    const text = `${method} /${pattern.join('/')}`;
    if (typeof parseRule(text) !== 'string') out.add(text);
  }
  return [...out].sort();
}

/** The entries that count as use of a route: `usage`, forwarded (not `denied`), not the overflow. */
export function analyzeScopes(entries: readonly AuditEntry[], routes?: Readonly<Record<string, RouteAllow>>): ScopesReport {
  const skipped = { denied: 0, overflow: 0, noRoute: 0, newer: 0 };
  const byRoute = new Map<string, { credential: string; ops: Map<string, Operation> }>();
  const acquired = new Map<string, string>();
  const leaseInstances = new Map<string, { fingerprint?: string; credential?: string; instances: Set<string> }>();

  for (const e of entries) {
    if (!isReadableAuditVersion(e)) {
      skipped.newer++;
      continue;
    }
    if (e.event === 'credential.acquired' || e.event === 'credential.rotated') {
      if (e.route && e.credential) acquired.set(e.route, e.credential);
      continue;
    }
    if (e.event !== 'usage') continue;
    const count = Number(e.count);
    if (!Number.isSafeInteger(count) || count <= 0) continue;
    if (e.lease && e.instance) {
      const l = leaseInstances.get(e.lease) ?? { instances: new Set<string>() };
      l.instances.add(e.instance);
      l.fingerprint ??= e.fingerprint;
      l.credential ??= e.credential;
      leaseInstances.set(e.lease, l);
    }
    if (e.path === OVERFLOW) {
      skipped.overflow += count;
      continue;
    }
    if (!e.route || e.route === NO_ROUTE || !e.method || e.path === undefined) {
      skipped.noRoute += count;
      continue;
    }
    if (e.denied) {
      skipped.denied += count;
      continue;
    }
    const route = e.route;
    const cfg = configOf(routes, route);
    const credential = e.credential ?? cfg?.credential ?? '?';
    let r = byRoute.get(`${route}\u0000${credential}`);
    if (!r) byRoute.set(`${route}\u0000${credential}`, (r = { credential, ops: new Map() }));
    const key = `${e.method} ${e.path}`;
    let op = r.ops.get(key);
    if (!op) {
      const rule = e.rule ?? (cfg ? firstMatch(cfg.allow, e.method, segmentsOf(e.path))?.text : undefined);
      r.ops.set(key, (op = { method: e.method, path: e.path, rule, count: 0, statuses: Object.create(null) as Record<string, number> }));
    }
    op.count += count;
    const status = e.status ?? '?';
    op.statuses[status] = (op.statuses[status] ?? 0) + count;
  }

  const out: RouteScope[] = [];
  for (const [key, r] of byRoute) {
    const route = key.slice(0, key.indexOf('\u0000'));
    const cfg = configOf(routes, route);
    const operations = [...r.ops.values()].sort((a, b) => b.count - a.count || a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
    const matched = new Set(operations.map((o) => o.rule));
    out.push({
      route,
      credential: r.credential,
      configured: routes ? cfg !== undefined : undefined,
      requests: operations.reduce((n, o) => n + o.count, 0),
      operations,
      rulesNeverMatched: cfg ? cfg.allow.map((a) => a.text).filter((t) => !matched.has(t)) : undefined,
      narrowest: narrowestRules(operations),
    });
  }
  // A configured route with no forwarded request: every rule is unmatched.
  const used = new Set(out.map((r) => r.route));
  const unused: Array<{ route: string; credential: string }> = [];
  for (const [route, cfg] of Object.entries(routes ?? {})) {
    if (used.has(route)) continue;
    unused.push({ route, credential: cfg.credential });
    out.push({ route, credential: cfg.credential, configured: true, requests: 0, operations: [], rulesNeverMatched: cfg.allow.map((a) => a.text), narrowest: [] });
  }
  for (const [route, credential] of acquired) if (!used.has(route) && !configOf(routes, route)) unused.push({ route, credential });
  out.sort((a, b) => a.route.localeCompare(b.route) || a.credential.localeCompare(b.credential));
  unused.sort((a, b) => a.route.localeCompare(b.route));

  // A lease is issued to one instance: the same lease id in use on two is a copied credential.
  const cloned: ClonedCredential[] = [];
  for (const [lease, l] of leaseInstances) {
    if (l.instances.size > 1) cloned.push({ event: 'anomaly.cloned_credential', lease, fingerprint: l.fingerprint, credential: l.credential, instances: [...l.instances].sort() });
  }
  return { routes: out, unused, cloned, skipped };
}
