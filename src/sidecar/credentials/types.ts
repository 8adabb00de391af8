/** What the proxy needs from a credential, whichever source holds it. */
export interface HeldCredential {
  readonly value: string;
  readonly fingerprint: string;
  /** Monotonic ms when this value was acquired. */
  readonly acquiredAtMs: number;
  /** Monotonic ms when it stops being usable; undefined for sources without expiry. */
  readonly expiresAtMs: number | undefined;
  readonly lease: string | undefined;
}

export type CredentialEvent =
  | { kind: 'acquired'; fingerprint: string; lease?: string }
  | { kind: 'rotated'; fingerprint: string; previousFingerprint: string; lease?: string }
  | { kind: 'refresh_failed'; error: Error }
  | { kind: 'expired'; fingerprint: string; lease?: string }
  | { kind: 'revoked'; fingerprint: string; lease?: string; reason: string };

export interface CredentialProvider {
  /** How /status and `leash check` name the source ("file:/path", "env:NAME", a lease name). */
  readonly description: string;
  /** The credential to inject now, or undefined when none is usable (fail closed). */
  current(): HeldCredential | undefined;
  /**
   * Every value held within its validity window, newest first, for scrubbing echoes:
   * leases until they expire, static sources a bounded number of recent values
   * (value-history.ts). Should return the same array while the set is unchanged.
   */
  recentValues(): readonly string[];
  /**
   * Re-acquire after an upstream 401/403. Concurrent calls share one attempt. `refused` is
   * the credential the upstream refused: when it is no longer the one held (a refresh
   * already replaced it), nothing is done, so 401s that trickle in afterwards for requests
   * sent with the old value do not each lease again.
   */
  refresh(refused?: HeldCredential): Promise<void>;
  /**
   * A request found nothing usable. Sources that are cheap to re-read (a file) look again
   * now; leased credentials ignore it: their own schedule and backoff decide when to ask
   * the authority, so agents retrying every second cannot drive the authority's load.
   */
  onUnavailable?(): void;
  /**
   * Whether a credential handed out earlier may still leave now: usable (outside its
   * safety margin) and not revoked since. Asked again when a request that waited for an
   * upstream socket is about to be written (server.ts), since the pool may have queued it.
   */
  stillSendable?(cred: HeldCredential, nowMs: number): boolean;
  start(): Promise<void>;
  close(): Promise<void>;
}
