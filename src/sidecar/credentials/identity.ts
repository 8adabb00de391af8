import type { Clock } from '../../core/clock.js';
import { AuthorityCallError } from '../../core/errors.js';
import type { IdentityResponse } from '../../core/protocol.js';
import { createCsr, createIdentityKey } from '../../core/x509.js';
import type { AuthorityClient } from './authority-client.js';
import { DEFAULT_ROTATION, isUsable, refreshAtMs, retryAtMs, type LeaseTiming, type RotationPolicy } from './rotation.js';

/**
 * The sidecar's own identity: an X.509 certificate with a SPIFFE URI SAN, obtained once
 * with a one-time join token and renewed over mTLS at half-life like any credential
 * (DESIGN §6, "identity certificates rotate by the same rule"). Each renewal uses a new
 * key pair, made here with node:crypto; the private key never leaves the process.
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
    private readonly joinToken: () => string | undefined,
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
    return this.current !== undefined && isUsable(this.current.timing, this.clock.monotonicMs(), this.policy);
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
    const renewing = this.usable();
    const sentAt = this.clock.monotonicMs();
    const key = createIdentityKey();
    let answer: IdentityResponse;
    try {
      const csr = createCsr(key, 'leash-sidecar');
      if (renewing) answer = await this.client.renewIdentity(csr);
      else {
        const token = this.joinToken();
        if (!token) throw new AuthorityCallError('refused', 'no join token to bootstrap with');
        answer = await this.client.bootstrap(token, csr);
      }
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (renewing && error instanceof AuthorityCallError && error.kind === 'refused') {
        // The authority no longer accepts this identity (revoked or unknown): it is gone.
        this.lose();
      }
      this.onEvent({ kind: 'failed', error });
      const now = this.clock.monotonicMs();
      this.schedule(retryAtMs(this.usable() ? this.current!.timing : undefined, now, this.failures++, this.random(), this.policy));
      return;
    }
    this.client.setIdentity({ certificate: answer.certificate, privateKey: key.privateKeyPem });
    const timing = { receivedAtMs: sentAt, ttlMs: answer.ttlSeconds * 1000 };
    this.current = { identity: answer.identity, timing };
    this.failures = 0;
    this.onEvent({ kind: renewing ? 'renewed' : 'bootstrapped', identity: answer.identity });
    this.schedule(refreshAtMs(timing, this.random(), this.policy));
  }

  /** Revoked by the authority: gone for good (a new identity needs a new join token). */
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
    this.timer = setTimeout(() => void this.run(), Math.max(0, atMs - this.clock.monotonicMs()));
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.inFlight?.catch(() => undefined);
  }
}
