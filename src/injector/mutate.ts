import { stringify } from 'yaml';
import type { Injector } from '../config/injector.js';
import { SIDECAR_SECRETS_DIR } from '../config/injector-secrets.js';

/**
 * The injector's decision, pure: an AdmissionReview v1 request in, an AdmissionReview v1
 * response out (docs/configuration.md, "Injector"). No I/O and no side effect: everything
 * the injected sidecar needs travels in the pod spec (its config in an env var, its
 * identity from a projected service-account token), so a retried or dry-run admission
 * changes nothing anywhere else.
 */

export const ANNOTATION = {
  inject: 'leash.dev/inject',
  routes: 'leash.dev/routes',
  port: 'leash.dev/port',
  adminPort: 'leash.dev/admin-port',
  status: 'leash.dev/status',
  /** A label (not an annotation): NetworkPolicies select pods by label (deploy/base/authority/networkpolicy.yaml). */
  injected: 'leash.dev/injected',
} as const;

/** The names the injector gives what it adds; a pod already holding them is left alone or refused. */
export const SIDECAR_NAME = 'leash';
export const TOKEN_VOLUME = 'leash-token';
export const TOKEN_DIR = SIDECAR_SECRETS_DIR;
export const CONFIG_ENV = 'LEASH_CONFIG';
export const TOKEN_AUDIENCE = 'leash';
export const TOKEN_EXPIRATION_SECONDS = 3600;

const ROUTE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** RFC 6902 operations the injector emits: only `add`. */
export interface PatchOp {
  op: 'add';
  path: string;
  value: unknown;
}

export type Decision =
  | { allowed: true; patch?: PatchOp[]; warnings?: string[]; reason: string }
  | { allowed: false; message: string };

interface EnvVar {
  name?: unknown;
}
interface Container {
  name?: unknown;
  env?: EnvVar[];
  envFrom?: unknown[];
  ports?: Array<{ containerPort?: unknown }>;
  volumeMounts?: Array<{ name?: unknown }>;
  securityContext?: { privileged?: unknown };
}
interface Volume {
  name?: unknown;
  hostPath?: { path?: unknown };
  projected?: { sources?: Array<{ serviceAccountToken?: { audience?: unknown } }> };
}
interface Pod {
  metadata?: { name?: string; generateName?: string; annotations?: Record<string, unknown>; labels?: Record<string, unknown> };
  spec?: { containers?: Container[]; initContainers?: Container[]; volumes?: Volume[]; hostNetwork?: unknown; hostPID?: unknown; shareProcessNamespace?: unknown };
}

/** A review the injector can decide on, or why not (→ HTTP 400). */
export type ParsedReview = { ok: true; uid: string; operation: string; kind: string; object: unknown } | { ok: false; message: string };

export function parseReview(body: unknown): ParsedReview {
  if (!isObject(body)) return { ok: false, message: 'body must be a JSON AdmissionReview object' };
  if (body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview') {
    return { ok: false, message: 'body must be an AdmissionReview of apiVersion admission.k8s.io/v1' };
  }
  const request = body.request;
  if (!isObject(request)) return { ok: false, message: 'AdmissionReview has no request' };
  if (typeof request.uid !== 'string' || request.uid === '' || request.uid.length > 128) return { ok: false, message: 'request.uid must be a non-empty string' };
  const kind = isObject(request.kind) && typeof request.kind.kind === 'string' ? request.kind.kind : '';
  const operation = typeof request.operation === 'string' ? request.operation : '';
  if (kind === 'Pod' && operation === 'CREATE' && !isObject(request.object)) return { ok: false, message: 'request.object must be the Pod being created' };
  return { ok: true, uid: request.uid, operation, kind, object: request.object };
}

/** The AdmissionReview v1 response for a decision. */
export function admissionResponse(uid: string, decision: Decision): Record<string, unknown> {
  const response: Record<string, unknown> = { uid, allowed: decision.allowed };
  if (decision.allowed) {
    if (decision.patch && decision.patch.length > 0) {
      response.patchType = 'JSONPatch';
      response.patch = Buffer.from(JSON.stringify(decision.patch)).toString('base64');
    }
    if (decision.warnings?.length) response.warnings = decision.warnings;
  } else {
    response.status = { code: 403, message: decision.message };
  }
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

/** What to do with one reviewed object. Only Pods being created are ever patched. */
export function decide(injector: Injector, review: Extract<ParsedReview, { ok: true }>): Decision {
  if (review.kind !== 'Pod' || review.operation !== 'CREATE') return { allowed: true, reason: 'not a pod being created' };
  return mutatePod(injector, review.object as Pod);
}

export function mutatePod(injector: Injector, pod: Pod): Decision {
  const annotations = pod.metadata?.annotations ?? {};
  if (annotations[ANNOTATION.inject] !== 'true') return { allowed: true, reason: 'not annotated for injection' };
  const spec = pod.spec;
  if (!isObject(spec) || !Array.isArray(spec.containers)) return { allowed: false, message: 'pod has no spec.containers' };
  // In the node's network namespace the proxy's loopback listener is the node's: every
  // process on the node, and every other hostNetwork pod, could use the credentials (and
  // the admin listener would be on every node address). Refused, not injected quietly.
  if (spec.hostNetwork === true) {
    return { allowed: false, message: 'leash is not injected into a hostNetwork pod: its proxy would listen on the node\'s loopback, open to every process on the node' };
  }
  // In one PID namespace the agent's containers see the sidecar's process: they can signal
  // it (Node opens a debugger on SIGUSR1 unless told not to), and one running as the same
  // uid, or with CAP_SYS_PTRACE, reads its environment and memory: the credentials.
  if (spec.shareProcessNamespace === true) {
    return { allowed: false, message: 'leash is not injected into a pod with shareProcessNamespace: its other containers could signal, trace or read the sidecar\'s process and the credentials in it' };
  }
  // hostPID is worse still: every container of the pod is in the node's PID namespace, so
  // the agent's containers see (signal, trace, read) the sidecar's process just the same.
  if (spec.hostPID === true) {
    return { allowed: false, message: 'leash is not injected into a hostPID pod: its other containers could signal, trace or read the sidecar\'s process and the credentials in it' };
  }
  const initContainers = Array.isArray(spec.initContainers) ? spec.initContainers : [];
  const hasSidecar = [...initContainers, ...spec.containers].some((c) => c?.name === SIDECAR_NAME);
  const injected = annotations[ANNOTATION.status] === 'injected';
  // A pod carrying leash written by hand (or marked injected without it) gets nothing more.
  if (hasSidecar !== injected) return { allowed: true, reason: 'already has a leash sidecar' };

  const routes = requestedRoutes(annotations[ANNOTATION.routes]);
  if (typeof routes === 'string') return { allowed: false, message: routes };
  // Own keys only: `constructor` or `toString` is in every object, not in the catalog.
  const unknown = routes.filter((r) => !Object.hasOwn(injector.catalog, r));
  if (unknown.length > 0) {
    const known = Object.keys(injector.catalog).join(', ');
    return { allowed: false, message: `${ANNOTATION.routes} names unknown route${unknown.length === 1 ? '' : 's'} ${unknown.map(show).join(', ')} (the injector knows: ${known})` };
  }

  const proxyPort = portAnnotation(annotations[ANNOTATION.port], ANNOTATION.port, injector.config.ports.proxy);
  if (typeof proxyPort === 'string') return { allowed: false, message: proxyPort };
  const adminPort = portAnnotation(annotations[ANNOTATION.adminPort], ANNOTATION.adminPort, injector.config.ports.admin);
  if (typeof adminPort === 'string') return { allowed: false, message: adminPort };
  if (proxyPort === adminPort) return { allowed: false, message: `${ANNOTATION.port} and ${ANNOTATION.adminPort} must differ (both ${proxyPort})` };
  if (injected) {
    // Reinvoked (reinvocationPolicy: IfNeeded) after a later webhook changed the pod: the
    // sidecar is in; app containers added since get the agent's variables too — and are
    // held to what the first pass held the pod's own to.
    const others = [...initContainers, ...spec.containers].filter((c) => c?.name !== SIDECAR_NAME);
    const exposed = mountsTokenVolume(others) ?? exposesIdentity(spec.volumes, others);
    if (exposed) return { allowed: false, message: exposed };
    const agentEnv = agentEnvFor(injector, routes, proxyPort);
    if (typeof agentEnv === 'string') return { allowed: false, message: agentEnv };
    const patch = envPatch(spec.containers, agentEnv, undefined);
    return patch.length === 0 ? { allowed: true, reason: 'already has a leash sidecar' } : { allowed: true, patch, warnings: [], reason: 'reinvoked: agent variables added to new containers' };
  }
  // The pod's containers share one network namespace: a port an app already declares would make leash fail to listen.
  for (const c of [...initContainers, ...spec.containers]) {
    for (const p of c?.ports ?? []) {
      if (p?.containerPort === proxyPort || p?.containerPort === adminPort) {
        return { allowed: false, message: `container ${show(c.name)} declares port ${String(p.containerPort)}, which leash would listen on; choose others with ${ANNOTATION.port} / ${ANNOTATION.adminPort}` };
      }
    }
  }
  if ((spec.volumes ?? []).some((v) => v?.name === TOKEN_VOLUME)) return { allowed: false, message: `pod already has a volume named ${TOKEN_VOLUME}` };
  // The volume is added here, so a mount of it by name in an app container would validate
  // once patched: the agent would hold the sidecar's token (and so its identity).
  const exposed = mountsTokenVolume([...initContainers, ...spec.containers]) ?? exposesIdentity(spec.volumes, [...initContainers, ...spec.containers]);
  if (exposed) return { allowed: false, message: exposed };

  const agentEnv = agentEnvFor(injector, routes, proxyPort);
  if (typeof agentEnv === 'string') return { allowed: false, message: agentEnv };

  const patch: PatchOp[] = [];
  const warnings: string[] = [];
  const sidecar = sidecarContainer(injector, routes, proxyPort, adminPort);
  // First among the init containers: those after it (migrations, fetchers) can already use the routes.
  patch.push(Array.isArray(spec.initContainers) ? { op: 'add', path: '/spec/initContainers/0', value: sidecar } : { op: 'add', path: '/spec/initContainers', value: [sidecar] });
  patch.push(Array.isArray(spec.volumes) ? { op: 'add', path: '/spec/volumes/-', value: tokenVolume(injector) } : { op: 'add', path: '/spec/volumes', value: [tokenVolume(injector)] });
  patch.push(...envPatch(spec.containers, agentEnv, warnings));
  patch.push(
    pod.metadata?.annotations
      ? { op: 'add', path: `/metadata/annotations/${pointer(ANNOTATION.status)}`, value: 'injected' }
      : { op: 'add', path: '/metadata/annotations', value: { [ANNOTATION.status]: 'injected' } },
    // The label that lets the pod reach the authority through its NetworkPolicy.
    pod.metadata?.labels
      ? { op: 'add', path: `/metadata/labels/${pointer(ANNOTATION.injected)}`, value: 'true' }
      : { op: 'add', path: '/metadata/labels', value: { [ANNOTATION.injected]: 'true' } },
  );
  return { allowed: true, patch, warnings, reason: 'injected' };
}

/** Why one of these containers would hold leash's own token volume, or undefined. */
function mountsTokenVolume(containers: readonly Container[]): string | undefined {
  for (const c of containers) {
    if (Array.isArray(c?.volumeMounts) && c.volumeMounts.some((m) => m?.name === TOKEN_VOLUME)) {
      return `container ${show(c.name)} mounts ${TOKEN_VOLUME}, the volume holding leash's own token; only the leash container may`;
    }
  }
  return undefined;
}

/**
 * Host directories that give a container the sidecar's token or process: the kubelet's
 * default --root-dir (every pod's volumes, the sidecar's projected token among them), the
 * host's /proc (every process, the sidecar's environment and memory), and the container
 * runtimes' sockets and state (whoever reaches them runs anything on the node).
 */
const HOST_DIRS = [
  '/var/lib/kubelet/',
  '/proc/',
  ...['containerd/', 'crio/', 'docker/', 'docker.sock/', 'cri-dockerd.sock/', 'k3s/'].flatMap((p) => [`/run/${p}`, `/var/run/${p}`]),
  '/var/lib/containerd/',
  '/var/lib/docker/',
  '/var/lib/containers/',
];

/**
 * Why another container of the pod could hold what the sidecar's identity rests on — its
 * own token for audience leash, or the sidecar's from the node — or undefined. Each gives
 * the agent the pod's identity (it attests as the pod and leases the routes' credentials
 * itself), as a mount of leash-token would: a second projected token for audience leash;
 * a hostPath at, above or below HOST_DIRS; a privileged container (it can mount the node's
 * disk, and so read that file).
 */
function exposesIdentity(volumes: readonly Volume[] | undefined, containers: readonly Container[]): string | undefined {
  const byName = new Map<unknown, Volume>();
  for (const v of Array.isArray(volumes) ? volumes : []) if (isObject(v)) byName.set(v.name, v);
  for (const c of containers) {
    if (!isObject(c)) continue;
    if (isObject(c.securityContext) && c.securityContext.privileged === true) {
      return `container ${show(c.name)} is privileged: it could read leash's token from the node's disk and take the pod's identity; leash is not injected into a pod with a privileged container`;
    }
    for (const m of Array.isArray(c.volumeMounts) ? c.volumeMounts : []) {
      const v = byName.get(m?.name);
      if (!v) continue;
      const sources = Array.isArray(v.projected?.sources) ? v.projected.sources : [];
      if (sources.some((src) => isObject(src) && isObject(src.serviceAccountToken) && src.serviceAccountToken.audience === TOKEN_AUDIENCE)) {
        return `container ${show(c.name)} mounts volume ${show(v.name)}, a service-account token for audience "${TOKEN_AUDIENCE}": it could attest as the pod; only the leash container may hold one`;
      }
      const host = typeof v.hostPath?.path === 'string' ? normalizeHostPath(v.hostPath.path) : undefined;
      if (host !== undefined && HOST_DIRS.some((dir) => dir.startsWith(host) || host.startsWith(dir))) {
        return `container ${show(c.name)} mounts hostPath ${show(v.hostPath!.path)}, which reaches the kubelet's pod volumes, the node's processes or its container runtime (leash's token and process among them); leash is not injected into such a pod`;
      }
    }
  }
  return undefined;
}

/** `/var//lib/./kubelet/` → `/var/lib/kubelet/`; a path with `..` is taken as the root (it may reach anywhere). */
function normalizeHostPath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return '/';
  return `/${parts.join('/')}${parts.length ? '/' : ''}`;
}

/**
 * The agent's variables added to each app container that does not set them. The app's own
 * value wins: a team that points OPENAI_BASE_URL elsewhere meant it (a warning says so;
 * `warnings` undefined on a reinvocation, which warned the first time). A value the
 * container takes through `envFrom` cannot be seen here (it is in a ConfigMap or Secret the
 * webhook does not read, having no side effects and no API access) and `env` wins over
 * `envFrom` in Kubernetes: the warning names the variables that would replace one.
 */
function envPatch(containers: readonly Container[], agentEnv: ReadonlyArray<{ name: string; value: string }>, warnings: string[] | undefined): PatchOp[] {
  const patch: PatchOp[] = [];
  containers.forEach((c, i) => {
    if (!isObject(c)) return;
    const existing = new Set((Array.isArray(c.env) ? c.env : []).map((e) => e?.name));
    const add = agentEnv.filter((e) => {
      if (!existing.has(e.name)) return true;
      warnings?.push(`leash: container ${show(c.name)} already sets ${e.name}; kept its value`);
      return false;
    });
    if (add.length === 0) return;
    if (Array.isArray(c.envFrom) && c.envFrom.length > 0) {
      warnings?.push(`leash: container ${show(c.name)} takes variables from envFrom; ${add.map((e) => e.name).join(', ')} set by leash in env replace any of the same name there (set yours in env to keep it)`);
    }
    if (Array.isArray(c.env)) for (const e of add) patch.push({ op: 'add', path: `/spec/containers/${i}/env/-`, value: e });
    else patch.push({ op: 'add', path: `/spec/containers/${i}/env`, value: add });
  });
  return patch;
}

/** `leash.dev/routes: "openai, search"` → ["openai", "search"]; a message when there is none. */
function requestedRoutes(value: unknown): string[] | string {
  if (typeof value !== 'string') return `${ANNOTATION.routes} must name the routes to give the pod, e.g. "openai,search"`;
  const names = [...new Set(value.split(',').map((s) => s.trim()).filter(Boolean))];
  if (names.length === 0) return `${ANNOTATION.routes} must name at least one route`;
  return names;
}

function portAnnotation(value: unknown, key: string, fallback: number): number | string {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= 65535)) return `${key} must be a port number 1-65535 (got ${show(value)})`;
  return n;
}

/** Each route's agentEnv with {{baseUrl}} filled in; two routes setting one variable differently is refused. */
function agentEnvFor(injector: Injector, routes: readonly string[], port: number): Array<{ name: string; value: string }> | string {
  const out = new Map<string, { value: string; route: string }>();
  for (const route of routes) {
    const baseUrl = `http://127.0.0.1:${port}/${route}`;
    for (const [name, template] of Object.entries(injector.config.routes[route]!.agentEnv)) {
      const value = template.split('{{baseUrl}}').join(baseUrl);
      const seen = out.get(name);
      if (seen && seen.value !== value) return `routes ${seen.route} and ${route} both set ${name} in agentEnv; ask for one of them`;
      out.set(name, { value, route });
    }
  }
  return [...out].map(([name, { value }]) => ({ name, value }));
}

/** The injected sidecar's config (a sidecar file, DESIGN §4), as the YAML it reads from $LEASH_CONFIG. */
export function sidecarConfigFor(injector: Injector, routes: readonly string[], proxyPort: number, adminPort: number): Record<string, unknown> {
  const { authority } = injector.config;
  return {
    ...(escapeDollars(injector.sidecar) as Record<string, unknown>),
    // Expanded by the sidecar from the downward API: the pod's final name, which admission does not know yet (generateName).
    instance: { id: '${POD_NAME}' },
    listen: `127.0.0.1:${proxyPort}`,
    // The kubelet's probes come from the node to the pod IP, not over loopback.
    admin: `0.0.0.0:${adminPort}`,
    authority: {
      url: authority.url,
      caFile: `${TOKEN_DIR}/ca.crt`,
      bootstrap: { kubernetes: { tokenFile: `${TOKEN_DIR}/token` } },
      ...(authority.timeout !== undefined ? { timeout: `${authority.timeout}ms` } : {}),
    },
    routes: Object.fromEntries(routes.map((r) => [r, escapeDollars(injector.catalog[r])])),
  };
}

function sidecarContainer(injector: Injector, routes: readonly string[], proxyPort: number, adminPort: number): Record<string, unknown> {
  const c = injector.config;
  const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path, port: adminPort, scheme: 'HTTP' },
    periodSeconds,
    timeoutSeconds: 2,
    failureThreshold,
  });
  return {
    name: SIDECAR_NAME,
    image: c.image,
    imagePullPolicy: c.imagePullPolicy,
    args: ['sidecar', '--config-env', CONFIG_ENV],
    // A native sidecar (Kubernetes ≥ 1.29): started before the app containers, which wait
    // for its startupProbe, i.e. until every required route holds a credential.
    restartPolicy: 'Always',
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: CONFIG_ENV, value: kubeletLiteral(stringify(sidecarConfigFor(injector, routes, proxyPort, adminPort))) },
    ],
    ports: [
      { name: 'leash-proxy', containerPort: proxyPort, protocol: 'TCP' },
      { name: 'leash-admin', containerPort: adminPort, protocol: 'TCP' },
    ],
    startupProbe: probe('/readyz', 1, 120),
    readinessProbe: probe('/readyz', 5, 3),
    livenessProbe: probe('/healthz', 10, 3),
    resources: stripUndefined(c.resources),
    securityContext: {
      runAsNonRoot: true,
      runAsUser: c.runAsUser,
      runAsGroup: c.runAsUser,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [{ name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true }],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}

/** The bound service-account token (audience leash, rotated by the kubelet) and the authority's CA, side by side. */
function tokenVolume(injector: Injector): Record<string, unknown> {
  const ca = injector.config.authority.caConfigMap;
  return {
    name: TOKEN_VOLUME,
    projected: {
      sources: [
        { serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: TOKEN_EXPIRATION_SECONDS, path: 'token' } },
        { configMap: { name: ca.name, items: [{ key: ca.key, path: 'ca.crt' }] } },
        // A Redis password from a Secret in the pod's namespace (config/injector-secrets.ts):
        // the spec names the Secret; the kubelet holds the pod until it exists, and updates
        // the file in place when it changes (read again at every Redis reconnection).
        ...injector.secretFiles.map((f) => ({ secret: { name: f.secretKeyRef.name, items: [{ key: f.secretKeyRef.key, path: f.path }] } })),
      ],
    },
  };
}

/** The sidecar expands `${VAR}` in its config; text from the catalog is already expanded, so `${` stays literal. */
function escapeDollars(value: unknown): unknown {
  if (typeof value === 'string') return value.split('${').join('$${');
  if (Array.isArray(value)) return value.map(escapeDollars);
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, escapeDollars(v)]));
  return value;
}

/**
 * An env value the kubelet passes on as written. It expands `$(NAME)` in every `value` of a
 * container's env (POD_NAME is defined just before LEASH_CONFIG) and turns every `$$` into
 * `$`, so `$${` (escapeDollars) would reach the sidecar as `${` and be expanded after all.
 * Each `$` doubled comes out as itself.
 */
export function kubeletLiteral(text: string): string {
  return text.split('$').join('$$');
}

function stripUndefined(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** RFC 6901: "~" and "/" escaped in a JSON pointer segment. */
export function pointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** A pod-supplied value in a message: names as they are, anything else quoted and bounded. */
function show(value: unknown): string {
  if (typeof value === 'string' && ROUTE_NAME.test(value)) return `"${value}"`;
  const text = JSON.stringify(typeof value === 'string' ? value : String(value)) ?? '""';
  return text.length > 66 ? `${text.slice(0, 64)}…"` : text;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
