/**
 * Readiness (/readyz), decided from what each route holds. A route is `required` (the
 * default) or optional (`routes.<name>.required: false`): a required route without a
 * usable credential holds readiness; an optional one answers 503
 * leash_credential_unavailable to its requests but does not keep the pod out of service,
 * so one unset vendor key in a multi-vendor config does not fail a startup probe forever.
 * A sidecar with no usable route at all is not ready either way. Nothing is ready before the start has finished (listeners are bound first, credentials
 * come after) or once shutdown has begun.
 */
export interface RouteState {
  route: string;
  available: boolean;
  required: boolean;
}

export interface Readiness {
  ready: boolean;
  /** Listeners are up but the first bootstrap and leases are still under way. */
  starting: boolean;
  shuttingDown: boolean;
  /**
   * Required routes without a usable credential: readiness waits for all of these. When
   * every route is optional and none has a credential: all of them (any one will do).
   */
  waitingFor: string[];
  /** Optional routes without a usable credential: unavailable, not awaited. */
  optionalUnavailable: string[];
  /** Every route without a usable credential (waitingFor ∪ optionalUnavailable). */
  unavailable: string[];
}

export function decideReadiness(routes: readonly RouteState[], phase: { started: boolean; shuttingDown: boolean }): Readiness {
  const down = routes.filter((r) => !r.available);
  let waitingFor = down.filter((r) => r.required).map((r) => r.route);
  // A sidecar that can serve nothing is not ready, optional routes or not: with every
  // route optional and none holding a credential, any one of them is awaited.
  if (waitingFor.length === 0 && down.length === routes.length) waitingFor = down.map((r) => r.route);
  return {
    ready: phase.started && !phase.shuttingDown && waitingFor.length === 0,
    starting: !phase.started,
    shuttingDown: phase.shuttingDown,
    waitingFor,
    optionalUnavailable: down.filter((r) => !r.required).map((r) => r.route),
    unavailable: down.map((r) => r.route),
  };
}
