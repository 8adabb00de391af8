import type { NodeAttestor } from '../core/attestation.js';
import { joinTokenAttestor } from './credentials/attestors/join-token.js';
import { kubernetesAttestor } from './credentials/attestors/kubernetes.js';
import { Sidecar, type SidecarDeps } from './sidecar.js';

/**
 * Builds the sidecar from a validated config and what the entry point read (as
 * src/authority/assemble.ts does for the authority): CA PEMs, Redis targets, and the
 * bootstrap evidence as a reader. Here the config's `authority.bootstrap` picks the node
 * attestor; src/bin/sidecar.ts stays the only place that reads files and the environment.
 */
export interface SidecarInputs extends Omit<SidecarDeps, 'attestor' | 'joinToken'> {
  /** Reads the evidence `authority.bootstrap` names (join token or Kubernetes token file), on each bootstrap. */
  bootstrapToken?: () => string | undefined;
}

export interface AssembledSidecar {
  sidecar: Sidecar;
  /** Undefined without an `authority:` section (local credentials only). */
  attestor: NodeAttestor | undefined;
}

export function attestorFor(config: SidecarDeps['config'], read: () => string | undefined): NodeAttestor | undefined {
  const bootstrap = config.authority?.bootstrap;
  if (!bootstrap) return undefined;
  if (bootstrap.kubernetes) return kubernetesAttestor(read, bootstrap.kubernetes.tokenFile);
  return joinTokenAttestor(read);
}

export function assembleSidecar(inputs: SidecarInputs): AssembledSidecar {
  const { bootstrapToken, ...deps } = inputs;
  const attestor = attestorFor(inputs.config, bootstrapToken ?? (() => undefined));
  return { sidecar: new Sidecar({ ...deps, attestor }), attestor };
}
