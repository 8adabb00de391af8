import type { NodeAttestor } from '../../../core/attestation.js';

/** Where the injector mounts the projected token (audience `leash`). */
export const DEFAULT_KUBERNETES_TOKEN_FILE = '/var/run/secrets/leash/token';

/**
 * Kubernetes attestation: a projected service-account token bound to this pod (config
 * `authority.bootstrap.kubernetes.tokenFile`). The kubelet rotates the file (at 80 % of
 * its TTL), so it is read afresh for every bootstrap, and every refresh of the identity is
 * a new bootstrap with the current token rather than an mTLS renewal: the authority then
 * asks the API server again, and a deleted pod's identity is not renewed.
 */
export function kubernetesAttestor(read: () => string | undefined, tokenFile: string): NodeAttestor {
  return {
    kind: 'kubernetes',
    reattest: true,
    evidence() {
      const token = read();
      return token
        ? { attestation: { kind: 'kubernetes', token } }
        : { missing: `no Kubernetes service-account token in ${tokenFile} (is the projected token volume mounted?)` };
    },
  };
}
