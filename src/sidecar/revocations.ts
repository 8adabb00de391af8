import type { Revocation } from '../core/protocol.js';

/**
 * What a revocation means for this sidecar (DESIGN §7), as a pure function of the
 * revocation, this instance's identity and the leases it holds:
 * `lease` → drop the route(s) holding it and lease anew; `instance` (this one) → cut off:
 * identity and every lease, nothing re-leased; `credential` → every route leasing it
 * drops and re-leases from the current source; `all` → every leased route does.
 */
export interface HeldLease {
  route: string;
  credential: string;
  leaseIds: readonly string[];
}

export type RevocationAction = { kind: 'none' } | { kind: 'cut-off' } | { kind: 're-lease'; routes: string[] };

export function decideRevocation(r: Revocation, identity: string | undefined, held: readonly HeldLease[]): RevocationAction {
  let routes: string[];
  switch (r.scope) {
    case 'instance':
      return identity !== undefined && r.target === identity ? { kind: 'cut-off' } : { kind: 'none' };
    case 'lease':
      routes = held.filter((h) => h.leaseIds.includes(r.target)).map((h) => h.route);
      break;
    case 'credential':
      routes = held.filter((h) => h.credential === r.target).map((h) => h.route);
      break;
    case 'all':
      routes = held.map((h) => h.route);
      break;
  }
  return routes.length ? { kind: 're-lease', routes } : { kind: 'none' };
}

/**
 * Which open exchanges (requests in flight, streams under way, WebSockets) a revocation
 * ends: those sent with a lease it revoked. A lease revocation names one lease, which an
 * exchange may hold although the route has rotated past it (a stream longer than a TTL);
 * a credential or `all` revocation every lease of the routes it re-leases; a cut-off every
 * lease this instance holds.
 */
export type CutRule = { kind: 'none' } | { kind: 'lease'; lease: string } | { kind: 'routes'; routes: ReadonlySet<string> };

export function exchangesToCut(r: Revocation, action: RevocationAction, leasedRoutes: readonly string[]): CutRule {
  if (action.kind === 'cut-off') return { kind: 'routes', routes: new Set(leasedRoutes) };
  if (r.scope === 'lease') return { kind: 'lease', lease: r.target };
  if (action.kind === 're-lease') return { kind: 'routes', routes: new Set(action.routes) };
  return { kind: 'none' };
}

/** Pure: whether an open exchange on `route`, sent with `lease`, falls under `rule`. */
export function cutsExchange(rule: CutRule, route: string, lease: string | undefined): boolean {
  if (lease === undefined || rule.kind === 'none') return false;
  return rule.kind === 'lease' ? lease === rule.lease : rule.routes.has(route);
}
