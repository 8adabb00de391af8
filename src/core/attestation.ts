/**
 * Node attestation, as a plug-in on both sides (SPIRE's node attestors): the sidecar
 * presents evidence of what it is, the authority checks that evidence with the matching
 * verifier and decides the SPIFFE ID. Both sides name the kind the same way, and the
 * bootstrap request carries `{ attestation: { kind, token }, csr }` (src/core/protocol.ts).
 *
 * - `join_token`: a one-time token an admin made (`leash admin token`) → `/join/<name>`.
 * - `kubernetes`: a projected service-account token bound to a pod, checked with a
 *   TokenReview → `/ns/<namespace>/sa/<serviceaccount>/pod/<pod-name>`.
 */
export const ATTESTATION_KINDS = ['join_token', 'kubernetes'] as const;
export type AttestationKind = (typeof ATTESTATION_KINDS)[number];

/** The evidence in a bootstrap request. The token is a secret: never logged, never in an error. */
export interface Attestation {
  kind: AttestationKind;
  token: string;
}

export const isAttestationKind = (v: unknown): v is AttestationKind => typeof v === 'string' && (ATTESTATION_KINDS as readonly string[]).includes(v);

/** Sidecar side: produces fresh evidence for each bootstrap. */
export interface NodeAttestor {
  readonly kind: AttestationKind;
  /**
   * Re-attest instead of renewing over mTLS: the evidence is renewable (the kubelet
   * rotates a projected token) and proving it again shows the workload still exists — a
   * deleted pod's bound token stops passing the TokenReview, so its identity ends with it.
   * A one-time join token can be used once only, so join-token identities renew over mTLS.
   */
  readonly reattest: boolean;
  /** The evidence now (read fresh each time), or undefined with the reason it is missing. */
  evidence(): { attestation: Attestation } | { missing: string };
}

/**
 * Whether an identity (its SPIFFE ID path) may be renewed over mTLS with its certificate
 * alone. Not a Kubernetes identity (`/ns/…`): it is refreshed by attesting again
 * (NodeAttestor.reattest), so a deleted pod's identity ends with its certificate; renewing
 * it by certificate would keep a stolen key, or a leftover sidecar, alive without end.
 */
export function renewsOverMtls(path: string): boolean {
  return !path.startsWith('/ns/');
}

/** Authority side: checks evidence of one kind and names the identity it proves. */
export interface AttestationVerifier {
  readonly kind: AttestationKind;
  /**
   * Resolves with the SPIFFE ID path (`/join/agent-1`, `/ns/a/sa/b/pod/c`). Throws
   * AttestationRefusedError when the evidence is not good (the caller's fault, 401), any
   * other error when it cannot be checked now (503, retry).
   */
  verify(token: string): Promise<{ path: string }>;
}
