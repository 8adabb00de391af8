import type { AttestationVerifier } from '../../core/attestation.js';
import type { Clock } from '../../core/clock.js';
import { JoinTokenError } from '../leases/errors.js';
import type { JoinTokens } from '../leases/join-tokens.js';
import { attestationRefused } from './errors.js';

/**
 * Join-token attestation: a one-time token an admin made for NAME proves `/join/NAME`.
 * Redeeming spends it, so a token works once; a store outage is not the caller's fault
 * and stays a retryable error.
 */
export class JoinTokenVerifier implements AttestationVerifier {
  readonly kind = 'join_token' as const;
  constructor(
    private readonly tokens: JoinTokens,
    private readonly clock: Clock,
  ) {}

  async verify(token: string): Promise<{ path: string }> {
    try {
      return { path: `/join/${await this.tokens.redeem(token, this.clock.wallMs())}` };
    } catch (err) {
      if (err instanceof JoinTokenError) throw attestationRefused(err.message);
      throw err;
    }
  }
}
