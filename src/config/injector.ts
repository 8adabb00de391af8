import { z } from 'zod';
import { deepFreeze, duration, filePath, hostPort, logLevel } from './common.js';
import { ConfigError } from '../core/errors.js';
import { secretRefsOf, type SecretFile } from './injector-secrets.js';
import { collectConfig, prefixLines, readDocument } from './load.js';
import { sidecarRouteSchema, sidecarSchema } from './sidecar.js';

/**
 * The injector's configuration (`leash injector --config FILE`, docs/configuration.md):
 * where the webhook listens, its TLS files, the sidecar image, what the injected sidecar
 * is told about the authority, and the catalog of routes a pod may ask for by name.
 */

const ROUTE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A Kubernetes quantity ("50m", "64Mi", "1"). */
const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$/;

const quantities = z.strictObject({
  cpu: z.string().regex(QUANTITY, 'must be a Kubernetes quantity like "100m"').optional(),
  memory: z.string().regex(QUANTITY, 'must be a Kubernetes quantity like "128Mi"').optional(),
});

/** A catalog route: a sidecar route (config/sidecar.ts), plus what the app containers are told. */
const catalogRoute = sidecarRouteSchema.extend({
  agentEnv: z
    .record(z.string().regex(ENV_NAME, 'must be an environment variable name'), z.string({ error: 'must be a string, e.g. "{{baseUrl}}/v1"' }))
    .default({}),
});

/** The sidecar keys the injector writes itself. */
const INJECTOR_WRITES = ['instance', 'listen', 'admin', 'authority', 'routes'] as const;

const port = z.int({ error: 'must be a port number' }).min(1).max(65535);

export const injectorSchema = z
  .strictObject({
    listen: hostPort.default({ host: '0.0.0.0', port: 8443 }),
    tls: z.strictObject({
      certFile: filePath,
      keyFile: filePath,
      // How often the files are looked at besides each handshake that names a server (SNI).
      reloadInterval: duration().refine((ms) => ms >= 100, 'must be at least 100ms').default(10_000),
    }),
    log: z.strictObject({ level: logLevel.default('info') }).prefault({}),
    image: z.string().min(1, 'must be an image reference, e.g. "ghcr.io/example/leash:1.2.3"'),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
    // The injected container's user: numeric, for the kubelet to check runAsNonRoot.
    runAsUser: z.int().min(1, 'must be a non-root uid (not 0)').default(65532),
    resources: z
      .strictObject({
        requests: quantities.default({ cpu: '50m', memory: '64Mi' }),
        limits: quantities.default({ cpu: '500m', memory: '256Mi' }),
      })
      .prefault({}),
    // Defaults for pods without leash.dev/port and leash.dev/admin-port (not 8080/9090:
    // agents and Prometheus take those).
    ports: z.strictObject({ proxy: port.default(15080), admin: port.default(15090) }).prefault({}),
    authority: z.strictObject({
      url: z
        .url({ protocol: /^https$/, error: 'must be an https URL' })
        .refine((u) => !new URL(u).username && !new URL(u).password, 'must not carry user:password'),
      // The authority's CA reaches the pod from a ConfigMap in the pod's own namespace
      // (trust-manager distributes one), projected next to the token.
      caConfigMap: z
        .strictObject({
          name: z.string().regex(K8S_NAME, 'must be a ConfigMap name').default('leash-authority-ca'),
          key: z.string().min(1).default('ca.crt'),
        })
        .prefault({}),
      timeout: duration().optional(),
    }),
    // Further sections of every injected sidecar's config, as in a sidecar file (revocations,
    // audit, rotation, log, …); the injector writes instance, listen, admin, authority and routes.
    sidecar: z
      .record(z.string(), z.unknown())
      .superRefine((extra, ctx) => {
        for (const key of INJECTOR_WRITES) {
          if (key in extra) ctx.addIssue({ code: 'custom', path: [key], message: 'is written by the injector (from the pod and this file), not set here' });
        }
      })
      .default({}),
    routes: z
      .record(z.string().regex(ROUTE_NAME, 'route names must be lower-case letters, digits, "-" or "_" (at most 63)'), catalogRoute)
      .refine((routes) => Object.keys(routes).length > 0, 'must define at least one route'),
  })
  .transform((c) => deepFreeze(c));

export type InjectorConfig = z.output<typeof injectorSchema>;

/**
 * A validated injector config, with each catalog route also kept as written (minus
 * `agentEnv`): that is what the injected sidecar config carries, so the sidecar reads the
 * same text the platform team wrote, not a re-serialisation of parsed values.
 */
export interface Injector {
  config: InjectorConfig;
  /** Route name → the route's keys as written (after `${VAR}` expansion), without agentEnv. */
  catalog: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** `config.sidecar` as the sidecar reads it: each `{ secretKeyRef }` replaced by its `{ file }` source (injector-secrets.ts). */
  sidecar: Readonly<Record<string, unknown>>;
  /** Keys of Secrets in the pod's namespace, projected as files into the sidecar's own volume. */
  secretFiles: readonly SecretFile[];
}

export function parseInjectorConfig(text: string, env: Readonly<Record<string, string | undefined>>, source = 'config'): Injector {
  const { value, problems } = collectInjector(readDocument(text, env, source));
  if (!value) throw new ConfigError(problems);
  return value;
}

/** Every problem of an expanded injector document (leash check), and the injector when there is none. */
export function collectInjector(doc: Record<string, unknown>): { value?: Injector; problems: string[] } {
  // Said in leash's words before the schema's ("must be a lease name, …") for the same key.
  const inRoutes = secretRefsInRoutes(doc.routes, ['routes']);
  const { value: config, problems } = collectConfig(injectorSchema, doc);
  if (!config || inRoutes.length) {
    const said = inRoutes.map((p) => `${p.slice(0, p.indexOf(':'))}:`);
    return { problems: [...inRoutes, ...problems.filter((p) => !said.some((k) => p.startsWith(k)))] };
  }
  const written = doc.routes as Record<string, Record<string, unknown>>;
  const catalog: Record<string, Record<string, unknown>> = {};
  for (const name of Object.keys(config.routes)) {
    const { agentEnv: _omit, ...route } = written[name]!;
    catalog[name] = route;
  }
  const refs = secretRefsOf(config.sidecar);
  if (refs.problems.length) return { problems: refs.problems };
  // The extra sidecar sections checked as the sidecar will check them (with a stand-in
  // bootstrap: it is the sidecar's own sections that are checked here).
  const sample = { ...refs.sidecar, routes: catalog, authority: { url: config.authority.url, caFile: '/ca.crt', bootstrap: { joinToken: { file: '/token' } } } };
  const sidecarProblems = collectConfig(sidecarSchema, sample).problems;
  if (sidecarProblems.length) return { problems: prefixLines(sidecarProblems, 'sidecar') };
  const podProblems = [...secretsForPods(config.sidecar, ['sidecar']), ...secretsForPods(catalog, ['routes'])];
  if (podProblems.length) return { problems: podProblems };
  return { value: { config, catalog: deepFreeze(catalog), sidecar: deepFreeze(refs.sidecar), secretFiles: deepFreeze(refs.files) }, problems: [] };
}

/** A route's credential is never taken from a Secret the agent's own pods could mount. */
function secretRefsInRoutes(value: unknown, path: string[]): string[] {
  if (value === null || typeof value !== 'object') return [];
  if (Object.hasOwn(value, 'secretKeyRef')) {
    return [`${path.join('.')}: { secretKeyRef } is not taken in a route: a Secret in the agent's namespace can be mounted by the agent's own pods; use a lease name (the authority holds the secret)`];
  }
  return Object.entries(value).flatMap(([k, v]) => secretRefsInRoutes(v, [...path, k]));
}

/**
 * What the injector writes into pods is their spec (`LEASH_CONFIG`), which anyone who may
 * `get pods` reads, and the injected container has no variables or files but its own
 * (`POD_NAME`, `LEASH_CONFIG`, the token): so no password in a URL (it would be in every
 * pod's spec) and no `{ env }` / `{ file }` source (nothing in the pod provides it; the
 * sidecar would not start). Problems by key path, never the value.
 */
function secretsForPods(value: unknown, path: string[]): string[] {
  if (typeof value === 'string') {
    let url: URL | undefined;
    try {
      url = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? new URL(value) : undefined;
    } catch {
      url = undefined;
    }
    return url?.password ? [`${path.join('.')}: a password in a URL would be written into every injected pod's spec, readable by anyone who may get pods; give it as { url, password: { secretKeyRef: { name, key } } } (docs/kubernetes.md, "Secrets and injected sidecars")`] : [];
  }
  if (value === null || typeof value !== 'object') return [];
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && (keys[0] === 'env' || keys[0] === 'file') && typeof o[keys[0]] === 'string') {
    return [`${path.join('.')}: { ${keys[0]} } sources are read in the agent's pod, where the injected sidecar has no variables or files but its own: use a lease name for a credential (the authority holds the secret)`];
  }
  return keys.flatMap((k) => secretsForPods(o[k], [...path, k]));
}
