import type { Clock } from '../../core/clock.js';
import { AuthorityCallError } from '../../core/errors.js';
import type { IdentityResponse } from '../../core/protocol.js';
import type { NodeAttestor } from '../../core/attestation.js';
import { createCsr, createIdentityKey } from '../../pki/x509.js';
import type { AuthorityClient } from './authority-client.js';
import { DEFAULT_ROTATION, MAX_TIMER_MS, isUsable, refreshAtMs, retryAtMs, type LeaseTiming, type RotationPolicy } from './rotation.js';

/**
 * The sidecar's own identity: an X.509 certificate with a SPIFFE URI SAN, obtained with
 * the node attestor's evidence (a one-time join token, or the pod's projected Kubernetes
 * token) and refreshed at half-life like any credential (DESIGN §6, "identity
 * certificates rotate by the same rule"): over mTLS for a join-token identity, by
 * attesting again with fresh evidence for an attestor that says `reattest`. Without a
 * usable identity (none yet, expired, or refused) it bootstraps again with fresh evidence.
 * Each renewal uses a new key pair, made here with node:crypto; the private key never
 * leaves the process.
 */
export type IdentityEvent =
  | { kind: 'bootstrapped'; identity: string }
  | { kind: 'renewed'; identity: string }
  | { kind: 'failed'; error: Error }
  | { kind: 'lost'; identity: string; reason: string };

export class IdentityManager {
  private current: { identity: string; timing: LeaseTiming } | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly client: AuthorityClient,
    private readonly attestor: NodeAttestor,
    private readonly clock: Clock,
    private readonly onEvent: (e: IdentityEvent) => void,
    private readonly policy: RotationPolicy = DEFAULT_ROTATION,
    private readonly random: () => number = Math.random,
  ) {}

  get identity(): string | undefined {
    return this.current?.identity;
  }

  /** Seconds until the identity certificate expires, or undefined without one. */
  ttlRemainingSeconds(): number | undefined {
    const c = this.current;
    return c ? Math.max(0, (c.timing.receivedAtMs + c.timing.ttlMs - this.clock.monotonicMs()) / 1000) : undefined;
  }

  usable(): boolean {
    return this.current !== undefined && isUsable(this.current.timing, this.clock.monotonicMs());
  }

  /** Bootstrap (or renew when an identity is held); resolves after the attempt. */
  start(): Promise<void> {
    return this.run();
  }

  private run(): Promise<void> {
    this.inFlight ??= this.attempt().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    const held = this.usable();
    // Reattesting attestors refresh by bootstrapping again, even with an identity in hand.
    const renewing = held && !this.attestor.reattest;
    const sentAt = this.clock.monotonicMs();
    const key = createIdentityKey();
    let answer: IdentityResponse;
    try {
      const csr = createCsr(key, 'leash-sidecar');
      if (renewing) answer = await this.client.renewIdentity(csr);
      else {
        const evidence = this.attestor.evidence();
        if ('missing' in evidence) throw new AuthorityCallError('refused', evidence.missing);
        answer = await this.client.bootstrap(evidence.attestation, csr);
      }
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (held && error instanceof AuthorityCallError && error.kind === 'refused' && error.status !== undefined) {
        // The authority no longer accepts this identity (revoked or unknown), or no longer
        // accepts the evidence behind it (a deleted pod's token): it is gone. (A refusal
        // without a status is ours — no evidence to hand — and changes nothing held.)
        this.lose();
      }
      this.onEvent({ kind: 'failed', error });
      const now = this.clock.monotonicMs();
      const retryAfterMs = error instanceof AuthorityCallError ? error.retryAfterMs : undefined;
      this.schedule(retryAtMs(this.usable() ? this.current!.timing : undefined, now, this.failures++, this.random(), this.policy, retryAfterMs));
      return;
    }
    const previous = this.current?.identity;
    this.client.setIdentity({ certificate: answer.certificate, privateKey: key.privateKeyPem });
    const timing = { receivedAtMs: sentAt, ttlMs: answer.ttlSeconds * 1000 };
    this.current = { identity: answer.identity, timing };
    this.failures = 0;
    // A re-attestation under the same identity is a renewal; under another (or none held), a bootstrap.
    const kind = renewing || (held && previous === answer.identity) ? 'renewed' : 'bootstrapped';
    this.onEvent({ kind, identity: answer.identity });
    this.schedule(refreshAtMs(timing, this.random(), this.policy));
  }

  /** Revoked by the authority: gone for good (a new identity needs a restart with new evidence). */
  revoke(reason: string): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.lose(reason);
  }

  private lose(reason = 'refused by the authority'): void {
    const c = this.current;
    this.current = undefined;
    this.client.setIdentity(undefined);
    if (c) this.onEvent({ kind: 'lost', identity: c.identity, reason });
  }

  private schedule(atMs: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    // setTimeout takes at most 2^31−1 ms (~24.8 days) and fires after 1 ms for anything
    // longer: a lease of ~62 days or more would be refreshed in a tight loop. Wait in steps.
    const delay = Math.max(0, atMs - this.clock.monotonicMs());
    this.timer = setTimeout(() => (delay > MAX_TIMER_MS ? this.schedule(atMs) : void this.run()), Math.min(delay, MAX_TIMER_MS));
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight?.catch(() => undefined);
  }
}
