/**
 * Secrets an injected sidecar may be given: a Redis password, from a Kubernetes Secret in
 * the agent pod's own namespace (docs/kubernetes.md, "Secrets and injected sidecars").
 *
 * In the injector's `sidecar:` section a password source may be `{ secretKeyRef: { name,
 * key } }`. The injector writes `{ file: /var/run/secrets/leash/<name> }` into the
 * sidecar's config in its place and projects that key of the Secret into the sidecar's own
 * volume (the one holding its token, which no other container may mount): the pod spec
 * names the Secret, never its value. A file, not an environment variable: the kubelet
 * updates it in place when the Secret changes, and the sidecar reads it again at every
 * Redis reconnection, so a rotated password needs no pod restarted (an environment
 * variable changed only with a new pod: every agent pod). Only the Redis passwords take one: a
 * route's credential from a Secret in the agent's namespace would be readable by whoever
 * writes the agent's pods (mount the same Secret), which is what leash exists to prevent.
 * Pure: no I/O.
 */

/** The injected sidecar's own volume (the projected token, the authority's CA, these secrets). */
export const SIDECAR_SECRETS_DIR = '/var/run/secrets/leash';

/** Where a `{ secretKeyRef }` is accepted, and the file it becomes in SIDECAR_SECRETS_DIR. */
export const SECRET_REF_PATHS: Readonly<Record<string, string>> = {
  'revocations.redis.password': 'revocations-redis-password',
  'audit.redis.password': 'audit-redis-password',
};

export interface SecretFile {
  /** The file's name in SIDECAR_SECRETS_DIR. */
  path: string;
  /** A Secret in the pod's namespace, and the key holding the value. */
  secretKeyRef: { name: string; key: string };
}

/** A Secret's name (a DNS subdomain) and a key in it (Kubernetes' ConfigMap/Secret key rule). */
const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

export interface SecretRefs {
  /** The section with each `{ secretKeyRef }` replaced by its `{ file }` source. */
  sidecar: Record<string, unknown>;
  files: SecretFile[];
  /** By key path, never a value. */
  problems: string[];
}

/** The `{ secretKeyRef }` sources of the injector's `sidecar:` section, translated. */
export function secretRefsOf(sidecar: Readonly<Record<string, unknown>>): SecretRefs {
  const files: SecretFile[] = [];
  const problems: string[] = [];
  const walk = (value: unknown, path: string[]): unknown => {
    if (Array.isArray(value)) return value.map((v, i) => walk(v, [...path, String(i)]));
    if (value === null || typeof value !== 'object') return value;
    const o = value as Record<string, unknown>;
    if (!Object.hasOwn(o, 'secretKeyRef')) return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, walk(v, [...path, k])]));
    const at = path.join('.');
    const name = SECRET_REF_PATHS[at];
    if (name === undefined) {
      problems.push(`sidecar.${at}: { secretKeyRef } is taken for ${Object.keys(SECRET_REF_PATHS).join(' and ')} only`);
      return value;
    }
    const ref = refOf(o);
    if (typeof ref === 'string') {
      problems.push(`sidecar.${at}.${ref}`);
      return value;
    }
    files.push({ path: name, secretKeyRef: ref });
    return { file: `${SIDECAR_SECRETS_DIR}/${name}` };
  };
  const translated = walk(sidecar, []) as Record<string, unknown>;
  return { sidecar: translated, files, problems };
}

/** `{ secretKeyRef: { name, key } }` checked, or what is wrong (a key path and message). */
function refOf(o: Record<string, unknown>): { name: string; key: string } | string {
  if (Object.keys(o).length !== 1) return `${Object.keys(o).find((k) => k !== 'secretKeyRef')}: unknown key (a source is { secretKeyRef: { name, key } } alone)`;
  const ref = o.secretKeyRef;
  if (ref === null || typeof ref !== 'object' || Array.isArray(ref)) return 'secretKeyRef: must be { name, key }';
  const r = ref as Record<string, unknown>;
  const extra = Object.keys(r).find((k) => k !== 'name' && k !== 'key');
  if (extra !== undefined) return `secretKeyRef.${extra}: unknown key (expected name, key)`;
  if (typeof r.name !== 'string' || !SECRET_NAME.test(r.name)) return 'secretKeyRef.name: must be the name of a Secret in the pod\'s namespace';
  if (typeof r.key !== 'string' || !SECRET_KEY.test(r.key)) return 'secretKeyRef.key: must be a key of that Secret (letters, digits, "-", "_", ".")';
  return { name: r.name, key: r.key };
}
