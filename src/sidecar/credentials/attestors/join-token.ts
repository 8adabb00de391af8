import type { NodeAttestor } from '../../../core/attestation.js';

/**
 * Join-token attestation: the one-time token an admin handed out (config
 * `authority.bootstrap.joinToken`). Spent by the first bootstrap, so the identity is then
 * renewed over mTLS; a restart needs a new token.
 */
export function joinTokenAttestor(read: () => string | undefined): NodeAttestor {
  return {
    kind: 'join_token',
    reattest: false,
    evidence() {
      const token = read();
      return token ? { attestation: { kind: 'join_token', token } } : { missing: 'no join token to bootstrap with' };
    },
  };
}
