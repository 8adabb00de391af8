/**
 * The clock every timing decision takes, injected so tests advance time instead of
 * sleeping (STYLE 5). `monotonicMs` is for intervals (never jumps with wall-clock steps);
 * `wallMs` only for timestamps shown to people and for expiry instants from elsewhere.
 */
export interface Clock {
  monotonicMs(): number;
  wallMs(): number;
}

export const systemClock: Clock = {
  monotonicMs: () => performance.now(),
  wallMs: () => Date.now(),
};
