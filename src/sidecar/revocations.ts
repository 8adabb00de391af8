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
