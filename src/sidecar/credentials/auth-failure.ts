import type { Clock } from '../../core/clock.js';
import {
  DEFAULT_AUTH_FAILURE,
  INITIAL_AUTH_FAILURE,
  decideAuthFailure,
  settleAuthFailure,
  type AuthFailurePolicy,
  type AuthFailureSkip,
  type AuthFailureState,
} from './rotation.js';
import type { CredentialProvider, HeldCredential } from './types.js';

export interface AuthFailureHooks {
  /** A 401/403 that started no refresh, and why. */
  skipped(reason: AuthFailureSkip): void;
  /** Once per fingerprint: a refresh handed back the value the upstream had just refused. */
  refusedValue(fingerprint: string): void;
  /** The refresh itself threw (providers report their failures as events; this is a last resort). */
  failed(err: unknown): void;
}

/**
 * The loop for one route's refreshes after upstream 401/403s: it asks decideAuthFailure
 * (rotation.ts) whether to refresh, runs at most one such refresh at a time, and records
 * what it brought with settleAuthFailure. The provider still coalesces with its own
 * scheduled refresh; this bounds how often auth failures may ask it at all.
 */
export class AuthFailureRefresher {
  private state: AuthFailureState = INITIAL_AUTH_FAILURE;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly provider: CredentialProvider,
    private readonly clock: Clock,
    private readonly hooks: AuthFailureHooks,
    private readonly policy: AuthFailurePolicy = DEFAULT_AUTH_FAILURE,
  ) {}

  /**
   * An upstream answered 401/403 to a request sent with `refused` (undefined: the proxy did
   * not say which; taken to be the one held). Returns the refresh it started or joined, if any.
   */
  onAuthFailure(refused: HeldCredential | undefined): Promise<void> | undefined {
    const held = this.provider.current();
    const target = refused ?? held;
    if (!target) {
      this.hooks.skipped('stale');
      return undefined;
    }
    const decision = decideAuthFailure(this.state, target.fingerprint, held?.fingerprint, this.inFlight !== undefined, this.clock.monotonicMs(), this.policy);
    this.state = decision.state;
    if (!decision.refresh) {
      this.hooks.skipped(decision.reason);
      return decision.reason === 'coalesced' ? this.inFlight : undefined;
    }
    const run = async () => {
      try {
        await this.provider.refresh(target);
      } catch (err) {
        this.hooks.failed(err);
      }
      const after = this.provider.current();
      const settled = settleAuthFailure(this.state, target, after && { fingerprint: after.fingerprint, lease: after.lease });
      this.state = settled.state;
      if (settled.newlyFutile) this.hooks.refusedValue(target.fingerprint);
    };
    this.inFlight = run().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }
}
