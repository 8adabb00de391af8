import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { authoritySchema } from '../../src/config/authority.js';
import { collectConfig, readDocument } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { collectInjector } from '../../src/config/injector.js';
import { compilePolicy, decide } from '../../src/authority/policy/policy.js';

/**
 * deploy/: every kustomize directory renders (`kubectl kustomize`), and every object it
 * renders — and every object of the examples — is validated against the Kubernetes schemas
 * (kubernetes-models, @kubernetes-models/prometheus-operator, @kubernetes-models/cert-manager).
 * An object of a kind with no model fails unless it is on NO_MODEL with a reason. Then the
 * rules a platform team relies on: every container non-root by number with a read-only root
 * and resources, the webhook fails closed and never sees its own namespace, and the leash
 * configs inside ConfigMaps pass leash's own config schemas.
 *
 * There is no API server here: schemas and invariants are checked, not admission.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const EXAMPLES = ['deploy/examples/agent-injected.yaml', 'deploy/examples/agent-manual.yaml'];
const OWN_NAMESPACE = 'leash-system';
const SUBSCRIBED = 'deploy/overlays/redis-in-cluster-subscribed';

const kubectlProbe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 10_000 });
const HAVE_KUBECTL = kubectlProbe.status === 0;
if (!HAVE_KUBECTL) {
  console.warn('deploy-manifests: kubectl not found on PATH: the kustomize directories are NOT rendered or validated (install kubectl to run these tests)');
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

/** Kinds no model package covers, each with why it is accepted unvalidated. Empty today. */
const NO_MODEL = new Map<string, string>([]);

/** apiVersion group → the package holding its models (the rest: kubernetes-models). */
const MODEL_PACKAGES: Record<string, string> = {
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  'cert-manager.io': '@kubernetes-models/cert-manager',
};

type ModelClass = new (data: unknown) => { validate(): void };

async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const module = group ? `${MODEL_PACKAGES[group!] ?? 'kubernetes-models'}/${group}/${version}` : `kubernetes-models/${version}`;
  try {
    const mod = (await import(module)) as Record<string, unknown>;
    const model = mod[kind];
    return typeof model === 'function' ? (model as ModelClass) : undefined;
  } catch {
    return undefined;
  }
}

function kustomizeDirs(dir = DEPLOY): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) found.push(...kustomizeDirs(join(dir, entry.name)));
    else if (entry.name === 'kustomization.yaml' || entry.name === 'kustomization.yml') found.push(dir);
  }
  return found.sort();
}

function parseObjects(text: string, source: string): K8sObject[] {
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length) throw new Error(`${source}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as K8sObject | null;
    return value === null ? [] : [value];
  });
}

function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  return parseObjects(text, relative(ROOT, dir));
}

const DIRS = kustomizeDirs();
const rendered = new Map<string, K8sObject[]>();
const examples = new Map(EXAMPLES.map((f) => [f, parseObjects(readFileSync(join(ROOT, f), 'utf8'), f)]));

/** Every rendered and example object with where it came from. */
function everything(): Array<{ source: string; object: K8sObject }> {
  const out: Array<{ source: string; object: K8sObject }> = [];
  for (const [source, objects] of [...rendered, ...examples]) for (const object of objects) out.push({ source, object });
  return out;
}

const id = (o: K8sObject) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

interface PodSpec {
  securityContext?: Record<string, unknown>;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Array<Record<string, unknown> & { name: string }>;
}
interface Container {
  name: string;
  securityContext?: Record<string, unknown> & { capabilities?: { drop?: string[] }; seccompProfile?: { type: string } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  restartPolicy?: string;
  [key: string]: unknown;
}

function podSpecOf(o: K8sObject): PodSpec | undefined {
  if (o.kind === 'Pod') return o.spec as PodSpec;
  const spec = o.spec as { template?: { spec?: PodSpec }; jobTemplate?: { spec?: { template?: { spec?: PodSpec } } } } | undefined;
  return spec?.template?.spec ?? spec?.jobTemplate?.spec?.template?.spec;
}

/** What a workload's containers break of the platform rules (empty: none). Pure. */
export function containerProblems(o: K8sObject): string[] {
  const pod = podSpecOf(o);
  if (!pod) return [];
  const problems: string[] = [];
  const podSc = pod.securityContext ?? {};
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    const sc = c.securityContext ?? {};
    const at = `${id(o)} container ${c.name}`;
    const eff = (k: string) => (sc[k] !== undefined ? sc[k] : podSc[k]);
    if (eff('runAsNonRoot') !== true) problems.push(`${at}: runAsNonRoot is not true`);
    // The kubelet can only enforce runAsNonRoot on a numeric user.
    const uid = eff('runAsUser');
    if (!Number.isInteger(uid) || (uid as number) <= 0) problems.push(`${at}: runAsUser is not a numeric non-root UID`);
    const gid = eff('runAsGroup');
    if (!Number.isInteger(gid) || (gid as number) <= 0) problems.push(`${at}: runAsGroup is not a numeric non-root GID`);
    if (sc.readOnlyRootFilesystem !== true) problems.push(`${at}: readOnlyRootFilesystem is not true`);
    if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation is not false`);
    if (!sc.capabilities?.drop?.includes('ALL')) problems.push(`${at}: capabilities do not drop ALL`);
    const seccomp = (sc.seccompProfile ?? podSc.seccompProfile) as { type?: string } | undefined;
    if (seccomp?.type !== 'RuntimeDefault' && seccomp?.type !== 'Localhost') problems.push(`${at}: no seccomp profile (RuntimeDefault)`);
    const r = c.resources;
    if (!r?.requests?.cpu || !r.requests.memory || !r.limits?.memory) problems.push(`${at}: resources need requests.cpu, requests.memory and limits.memory`);
  }
  return problems;
}

/** Each object against its model; failures name the source and object. */
async function validateAll(items: Array<{ source: string; object: K8sObject }>): Promise<{ failures: string[]; validated: number }> {
  const failures: string[] = [];
  let validated = 0;
  for (const { source, object } of items) {
    if (typeof object.apiVersion !== 'string' || typeof object.kind !== 'string' || typeof object.metadata?.name !== 'string') {
      failures.push(`${source}: an object without apiVersion, kind or metadata.name`);
      continue;
    }
    const Model = await modelFor(object.apiVersion, object.kind);
    if (!Model) {
      if (!NO_MODEL.has(`${object.apiVersion}/${object.kind}`)) failures.push(`${source}: ${id(object)} (${object.apiVersion}): no schema model and not on NO_MODEL`);
      continue;
    }
    try {
      new Model(object).validate();
      validated++;
    } catch (err) {
      failures.push(`${source}: ${id(object)}: ${(err as Error).message}`);
    }
  }
  return { failures, validated };
}

beforeAll(() => {
  if (!HAVE_KUBECTL) return;
  for (const dir of DIRS) rendered.set(relative(ROOT, dir), render(dir));
}, 120_000);

describe.skipIf(!HAVE_KUBECTL)('deploy/ kustomize directories', () => {
  it('finds the base, the monitoring kustomization and the overlays', () => {
    expect(DIRS.map((d) => relative(ROOT, d))).toEqual([
      'deploy/base',
      'deploy/monitoring',
      'deploy/overlays/production',
      'deploy/overlays/redis-in-cluster',
      'deploy/overlays/redis-in-cluster-subscribed',
    ]);
    for (const [dir, objects] of rendered) expect(objects.length, dir).toBeGreaterThan(0);
  });

  it('validates every rendered and example object against its Kubernetes schema', async () => {
    const { failures, validated } = await validateAll(everything());
    expect(failures).toEqual([]);
    expect(validated).toBeGreaterThan(40);
  });

  it('the validation does catch a broken object (a string where the schema wants an integer)', async () => {
    const deployment = structuredClone(find(rendered.get('deploy/base')!, 'Deployment', 'leash-authority'));
    (deployment.spec as { replicas: unknown }).replicas = 'two';
    const Model = (await modelFor('apps/v1', 'Deployment'))!;
    expect(() => new Model(deployment).validate()).toThrow(/replicas/);
    expect(await modelFor('example.com/v1', 'Widget')).toBeUndefined();
  });

  it('puts every namespaced leash object in leash-system', () => {
    for (const [dir, objects] of rendered) {
      for (const o of objects) {
        if (['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration'].includes(o.kind)) continue;
        expect(o.metadata.namespace, `${dir}: ${id(o)}`).toBe(OWN_NAMESPACE);
      }
    }
  });

  it('runs every container non-root by number, read-only, without privileges, with resources', () => {
    const problems = everything().flatMap(({ source, object }) => containerProblems(object).map((p) => `${source}: ${p}`));
    expect(problems).toEqual([]);
    // The rule itself bites: a container running as a user name (no runAsUser) is reported.
    const d = structuredClone(find(rendered.get('deploy/base')!, 'Deployment', 'leash-authority'));
    const pod = podSpecOf(d)!;
    delete pod.securityContext!.runAsUser;
    delete pod.containers[0]!.securityContext!.runAsUser;
    pod.containers[0]!.securityContext!.readOnlyRootFilesystem = false;
    expect(containerProblems(d)).toEqual([
      'Deployment leash-system/leash-authority container authority: runAsUser is not a numeric non-root UID',
      'Deployment leash-system/leash-authority container authority: readOnlyRootFilesystem is not true',
    ]);
  });

  it('the webhook fails closed, has no side effects, speaks v1, is quick and never sees its own namespace', () => {
    const objects = rendered.get('deploy/base')!;
    const config = find(objects, 'MutatingWebhookConfiguration', 'leash-injector');
    const webhooks = config.webhooks as Array<Record<string, any>>;
    expect(webhooks.length).toBeGreaterThan(0);
    for (const w of webhooks) {
      expect(w.failurePolicy, w.name).toBe('Fail');
      expect(w.sideEffects, w.name).toBe('None');
      expect(w.admissionReviewVersions, w.name).toEqual(['v1']);
      expect(w.timeoutSeconds, w.name).toBeLessThanOrEqual(10);
      const exclusions = (w.namespaceSelector?.matchExpressions ?? []) as Array<{ key: string; operator: string; values: string[] }>;
      expect(
        exclusions.some((e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn' && e.values.includes(OWN_NAMESPACE)),
        `${w.name} must exclude ${OWN_NAMESPACE}`,
      ).toBe(true);
      // Only opted-in pods: a pod label or a namespace label selects them, never all pods.
      const optIn = w.objectSelector?.matchLabels?.['leash.dev/inject'] === 'true' || exclusions.some((e) => e.key === 'leash.dev/injection' && e.operator === 'In');
      expect(optIn, `${w.name} must select only opted-in pods`).toBe(true);
      expect(w.rules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
      // The service it calls is the injector's, in the injector's namespace.
      expect(w.clientConfig.service).toMatchObject({ name: 'leash-injector', namespace: OWN_NAMESPACE, path: '/mutate' });
      expect(w.clientConfig.caBundle, 'caBundle comes from cert-manager, not the manifest').toBeUndefined();
    }
    // The injector's own namespace carries a label the webhook cannot be told to select.
    expect(find(objects, 'Namespace', OWN_NAMESPACE).metadata.labels?.['leash.dev/injection']).toBeUndefined();

    // caBundle: injected from a Certificate in leash-system (the CA: see the next test); the
    // serving Certificate names the Service.
    const [certNs, certName] = config.metadata.annotations!['cert-manager.io/inject-ca-from']!.split('/');
    expect(certNs).toBe(OWN_NAMESPACE);
    find(objects, 'Certificate', certName!);
    const cert = find(objects, 'Certificate', 'leash-injector-webhook');
    const svc = find(objects, 'Service', 'leash-injector');
    expect((cert.spec as { dnsNames: string[] }).dnsNames).toContain(`leash-injector.${OWN_NAMESPACE}.svc`);
    const port = webhooks[0]!.clientConfig.service.port;
    expect((svc.spec as { ports: Array<{ port: number }> }).ports.map((p) => p.port)).toContain(port);
    // The injector serves the Certificate's Secret, mounted as a directory (a subPath mount never sees a renewal).
    const injector = find(objects, 'Deployment', 'leash-injector');
    const pod = podSpecOf(injector)!;
    const tls = pod.volumes!.find((v) => (v.secret as { secretName?: string } | undefined)?.secretName === (cert.spec as { secretName: string }).secretName);
    expect(tls, 'the injector mounts the Certificate Secret').toBeDefined();
    const mount = (pod.containers[0]!.volumeMounts as Array<{ name: string; subPath?: string }>).find((m) => m.name === tls!.name);
    expect(mount?.subPath).toBeUndefined();
  });

  it("the webhook's caBundle is a CA that outlives the serving certificate's renewals (no self-signed leaf)", () => {
    // With the serving certificate self-signed, each renewal (rotationPolicy: Always) changes
    // the certificate the API server must trust: cert-manager's CA injector rewrites caBundle
    // within seconds, the kubelet projects the new Secret into the injector up to a minute or
    // two later, and for that window every annotated pod is refused (failurePolicy: Fail) —
    // cert-manager#6350, aws-load-balancer-controller#4019. A CA of its own, issuing the
    // serving certificate, keeps caBundle the same across them.
    const objects = rendered.get('deploy/base')!;
    const webhook = find(objects, 'MutatingWebhookConfiguration', 'leash-injector');
    const [, injected] = webhook.metadata.annotations!['cert-manager.io/inject-ca-from']!.split('/');
    const ca = find(objects, 'Certificate', injected!);
    const caSpec = ca.spec as { isCA?: boolean; secretName: string; duration?: string; privateKey?: { rotationPolicy?: string }; issuerRef: { kind: string; name: string } };
    expect(caSpec.isCA, `${injected} is a CA`).toBe(true);
    // A CA renewal keeps its key, so serving certificates it signed still verify against the new CA certificate.
    expect(caSpec.privateKey?.rotationPolicy).toBe('Never');
    const issuerOf = (ref: { kind: string; name: string }) => {
      expect(ref.kind).toBe('Issuer');
      return find(objects, 'Issuer', ref.name).spec as { selfSigned?: unknown; ca?: { secretName: string } };
    };
    expect(issuerOf(caSpec.issuerRef).selfSigned).toBeDefined();
    // The serving certificate (the Secret the injector mounts) is issued by that CA, not self-signed.
    const serving = objects.filter((o) => o.kind === 'Certificate' && (o.spec as { dnsNames?: string[] }).dnsNames?.includes(`leash-injector.${OWN_NAMESPACE}.svc`));
    expect(serving).toHaveLength(1);
    const servingSpec = serving[0]!.spec as { isCA?: boolean; secretName: string; issuerRef: { kind: string; name: string } };
    expect(servingSpec.isCA).not.toBe(true);
    expect(issuerOf(servingSpec.issuerRef).ca?.secretName).toBe(caSpec.secretName);
    const tls = podSpecOf(find(objects, 'Deployment', 'leash-injector'))!.volumes!.find((v) => v.name === 'tls') as unknown as { secret: { secretName: string } };
    expect(tls.secret.secretName).toBe(servingSpec.secretName);
    // The CA lives far longer than the serving certificate it renews.
    const hours = (d: string | undefined) => Number(/^(\d+)h$/.exec(d ?? '')?.[1] ?? NaN);
    expect(hours(caSpec.duration)).toBeGreaterThanOrEqual(10 * hours((serving[0]!.spec as { duration?: string }).duration));
  });

  it('gives the authority exactly TokenReview create, two spread replicas, HTTPS probes and a budget', () => {
    const objects = rendered.get('deploy/base')!;
    const role = find(objects, 'ClusterRole', 'leash-authority-tokenreview');
    expect(role.rules).toEqual([{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }]);
    const binding = find(objects, 'ClusterRoleBinding', 'leash-authority-tokenreview');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'leash-authority', namespace: OWN_NAMESPACE }]);
    const d = find(objects, 'Deployment', 'leash-authority');
    expect((d.spec as { replicas: number }).replicas).toBe(2);
    const pod = podSpecOf(d) as PodSpec & { affinity?: { podAntiAffinity?: unknown }; serviceAccountName?: string };
    expect(pod.affinity?.podAntiAffinity).toBeDefined();
    expect(pod.serviceAccountName).toBe('leash-authority');
    const c = pod.containers[0]!;
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      expect(c[probe], probe).toMatchObject({ httpGet: { scheme: 'HTTPS', path: '/healthz', port: 'https' } });
    }
    for (const name of ['leash-authority', 'leash-injector']) {
      const pdb = find(objects, 'PodDisruptionBudget', name);
      expect((pdb.spec as { selector: unknown }).selector).toEqual({ matchLabels: { 'app.kubernetes.io/name': name } });
    }
  });

  it('lets only sidecars reach the authority and only the authority reach the in-cluster Redis', () => {
    const base = rendered.get('deploy/base')!;
    const np = find(base, 'NetworkPolicy', 'leash-authority');
    const peers = (np.spec as { ingress: Array<{ from: Array<Record<string, any>> }> }).ingress.flatMap((r) => r.from);
    // Every peer is narrowed: a sidecar label, a labelled namespace, never an empty selector on its own.
    for (const peer of peers) {
      const narrowed = Object.keys(peer.podSelector?.matchLabels ?? {}).length > 0 || Object.keys(peer.namespaceSelector?.matchLabels ?? {}).length > 0;
      expect(narrowed, JSON.stringify(peer)).toBe(true);
    }
    // The monitoring namespace reaches the metrics port (metrics.listen) only, never the API
    // port, and the authority's config, container, Service and ServiceMonitor agree on it.
    const rules = (np.spec as { ingress: Array<{ ports: Array<{ port: number }>; from: Array<Record<string, any>> }> }).ingress;
    const monitoring = (r: (typeof rules)[number]) => r.from.some((p) => p.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'monitoring');
    expect(rules.filter(monitoring).map((r) => r.ports.map((p) => p.port))).toEqual([[9090]]);
    expect(rules.filter((r) => r.ports.some((p) => p.port === 8443)).some(monitoring)).toBe(false);
    const authorityYaml = (find(base, 'ConfigMap', 'leash-authority').data as Record<string, string>)['authority.yaml']!;
    expect(authorityYaml).toMatch(/^\s*metrics: \{ listen: 0\.0\.0\.0:9090 \}/m);
    const svcPorts = (find(base, 'Service', 'leash-authority').spec as { ports: Array<{ name: string; port: number }> }).ports;
    expect(svcPorts.find((p) => p.name === 'metrics')?.port).toBe(9090);
    const sm = find(rendered.get('deploy/monitoring')!, 'ServiceMonitor', 'leash-authority');
    expect((sm.spec as { endpoints: Array<{ port: string; scheme: string }> }).endpoints[0]).toMatchObject({ port: 'metrics', scheme: 'http' });
    const redis = rendered.get('deploy/overlays/redis-in-cluster')!;
    const rnp = find(redis, 'NetworkPolicy', 'leash-redis');
    expect((rnp.spec as { ingress: unknown }).ingress).toEqual([
      { ports: [{ port: 6379, protocol: 'TCP' }], from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'leash-authority' } } }] },
    ]);
    // The overlay's Secret is the one the authority reads its Redis URL from.
    const url = (find(redis, 'Secret', 'leash-redis').data as { url: string }).url;
    expect(Buffer.from(url, 'base64').toString()).toBe('redis://leash-redis.leash-system.svc:6379');
  });

  it('redis-in-cluster-subscribed lets the authority and injected sidecar pods reach Redis, and no policy of leash\'s holds sidecars back', () => {
    const objects = rendered.get(SUBSCRIBED)!;
    const rnp = find(objects, 'NetworkPolicy', 'leash-redis');
    expect(rnp.spec).toEqual({
      podSelector: { matchLabels: { 'app.kubernetes.io/name': 'leash-redis' } },
      policyTypes: ['Ingress'],
      ingress: [
        {
          ports: [{ port: 6379, protocol: 'TCP' }],
          from: [
            { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'leash-authority' } } },
            { namespaceSelector: {}, podSelector: { matchLabels: { 'leash.dev/injected': 'true' } } },
          ],
        },
      ],
    });
    // The label is the one the injector puts on the pods it mutates.
    expect(readFileSync(join(ROOT, 'src/injector/mutate.ts'), 'utf8')).toContain("injected: 'leash.dev/injected'");
    // The only egress rules deploy/ renders are the injector's own (in leash-system): none
    // selects agent pods, so nothing of leash's keeps an injected sidecar from Redis.
    for (const [dir, all] of rendered) {
      for (const np of all.filter((o) => o.kind === 'NetworkPolicy')) {
        const spec = np.spec as { policyTypes: string[]; podSelector: { matchLabels?: Record<string, string> } };
        if (!spec.policyTypes.includes('Egress')) continue;
        expect(`${dir}: ${np.metadata.namespace}/${spec.podSelector.matchLabels?.['app.kubernetes.io/name']}`).toBe(`${dir}: ${OWN_NAMESPACE}/leash-injector`);
      }
    }
  });

  it('redis-in-cluster-subscribed: the authority connects as leash-authority with its password from Secret leash-redis-users, the base otherwise unchanged', () => {
    const objects = rendered.get(SUBSCRIBED)!;
    const base = rendered.get('deploy/base')!;
    // No Secret is rendered: leash-redis (a URL with no user) is gone, the passwords are the operator's.
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    const env = podSpecOf(find(objects, 'Deployment', 'leash-authority'))!.containers[0]!.env as Array<{ name: string; value?: string; valueFrom?: unknown }>;
    // $(LEASH_REDIS_PASSWORD) is expanded by the kubelet only if the variable comes earlier.
    expect(env).toEqual([
      { name: 'LEASH_ADMIN_TOKEN', valueFrom: { secretKeyRef: { name: 'leash-authority-admin', key: 'token' } } },
      { name: 'LEASH_REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: 'leash-redis-users', key: 'authority' } } },
      { name: 'LEASH_REDIS_URL', value: 'redis://leash-authority:$(LEASH_REDIS_PASSWORD)@leash-redis.leash-system.svc:6379' },
    ]);
    // The Service the URL names is the overlay's Redis.
    expect(find(objects, 'Service', 'leash-redis').metadata.namespace).toBe(OWN_NAMESPACE);
    // Everything else of the authority and the injector is the base's.
    const strip = (o: K8sObject) => {
      const c = structuredClone(o);
      delete (podSpecOf(c)!.containers[0] as { env?: unknown }).env;
      return c;
    };
    expect(strip(find(objects, 'Deployment', 'leash-authority'))).toEqual(strip(find(base, 'Deployment', 'leash-authority')));
    expect(find(objects, 'ConfigMap', 'leash-authority')).toEqual(find(base, 'ConfigMap', 'leash-authority'));
    expect(find(objects, 'Deployment', 'leash-injector')).toEqual(find(base, 'Deployment', 'leash-injector'));
  });

  it('redis-in-cluster-subscribed: Redis loads its ACL file with the passwords from Secret leash-redis-users, hardened like the rest', () => {
    const objects = rendered.get(SUBSCRIBED)!;
    const pod = podSpecOf(find(objects, 'StatefulSet', 'leash-redis'))!;
    const [init] = pod.initContainers!;
    const redis = pod.containers.find((c) => c.name === 'redis')!;
    const args = redis.args as string[];
    expect(args.slice(0, args.indexOf('--aclfile'))).toEqual((podSpecOf(find(rendered.get('deploy/overlays/redis-in-cluster')!, 'StatefulSet', 'leash-redis'))!.containers[0]!.args as string[]));
    const aclFile = args[args.indexOf('--aclfile') + 1];
    expect((init!.env as Array<{ name: string; value?: string }>).find((e) => e.name === 'ACL_FILE')?.value).toBe(aclFile);
    expect(init!.image).toBe(redis.image);
    const secretRefs = (c: Container) => ((c.env ?? []) as Array<{ valueFrom?: { secretKeyRef?: { name: string; key: string } } }>).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : []));
    expect(secretRefs(init!)).toEqual([{ name: 'leash-redis-users', key: 'authority' }, { name: 'leash-redis-users', key: 'sidecar' }]);
    expect(secretRefs(redis)).toEqual([{ name: 'leash-redis-users', key: 'sidecar' }]);
    expect(containerProblems(find(objects, 'StatefulSet', 'leash-redis'))).toEqual([]);
    // The ACL file lives in memory, never on the data volume.
    const acl = pod.volumes!.find((v) => v.name === 'acl')!;
    expect(acl.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '1Mi' });
  });

  it('documents every Secret the base expects the user to create', () => {
    const objects = rendered.get('deploy/base')!;
    const created = new Set(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name));
    const certSecrets = new Set(objects.filter((o) => o.kind === 'Certificate').map((o) => (o.spec as { secretName: string }).secretName));
    const referenced = new Set<string>();
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) return v.forEach(walk);
      if (v === null || typeof v !== 'object') return;
      const r = v as Record<string, unknown>;
      if (typeof r.secretName === 'string') referenced.add(r.secretName);
      if (r.secretKeyRef && typeof (r.secretKeyRef as { name?: unknown }).name === 'string') referenced.add((r.secretKeyRef as { name: string }).name);
      Object.values(r).forEach(walk);
    };
    objects.forEach((o) => walk(o.spec));
    const userMade = [...referenced].filter((n) => !created.has(n) && !certSecrets.has(n));
    expect(userMade.sort()).toEqual(['leash-authority-admin', 'leash-authority-ca', 'leash-authority-signing', 'leash-credentials', 'leash-redis']);
    const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
    for (const name of userMade) expect(readme, `deploy/README.md names Secret ${name}`).toContain(`\`${name}\``);
  });

  it('documents the Secrets redis-in-cluster-subscribed expects, in leash-system and in agent namespaces', () => {
    const objects = rendered.get(SUBSCRIBED)!;
    const referenced = new Set<string>();
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) return v.forEach(walk);
      if (v === null || typeof v !== 'object') return;
      const r = v as Record<string, unknown>;
      if (typeof r.secretName === 'string') referenced.add(r.secretName);
      if (r.secretKeyRef && typeof (r.secretKeyRef as { name?: unknown }).name === 'string') referenced.add((r.secretKeyRef as { name: string }).name);
      Object.values(r).forEach(walk);
    };
    objects.forEach((o) => walk(o.spec));
    expect(referenced.has('leash-redis'), 'the authority no longer reads Secret leash-redis').toBe(false);
    expect(referenced.has('leash-redis-users')).toBe(true);
    // The injector names leash-redis-sidecar in its config: the pods of every agent namespace read it.
    const injector = collectInjector(readDocument((find(objects, 'ConfigMap', 'leash-injector').data as Record<string, string>)['injector.yaml']!, {}));
    const inAgentNamespaces = injector.value!.secretFiles.map((e) => e.secretKeyRef.name);
    expect(inAgentNamespaces).toEqual(['leash-redis-sidecar']);
    const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
    const kustomization = readFileSync(join(ROOT, SUBSCRIBED, 'kustomization.yaml'), 'utf8');
    for (const name of ['leash-redis-users', ...inAgentNamespaces]) {
      expect(readme, `deploy/README.md names Secret ${name}`).toContain(`\`${name}\``);
      expect(kustomization, `the overlay's kustomization.yaml names Secret ${name}`).toContain(name);
    }
  });

  it('keeps the image the injector puts in pods in step with the kustomization image', () => {
    const objects = rendered.get('deploy/base')!;
    const injectorImage = podSpecOf(find(objects, 'Deployment', 'leash-injector'))!.containers[0]!.image;
    const doc = readDocument((find(objects, 'ConfigMap', 'leash-injector').data as Record<string, string>)['injector.yaml']!, {});
    expect(doc.image).toBe(injectorImage);
  });
});

describe.skipIf(!HAVE_KUBECTL)('leash configs inside the manifests', () => {
  const authorityDoc = () => {
    const cm = find(rendered.get('deploy/base')!, 'ConfigMap', 'leash-authority');
    return readDocument((cm.data as Record<string, string>)['authority.yaml']!, { LEASH_REDIS_URL: 'redis://leash-redis.leash-system.svc:6379', LEASH_ADMIN_TOKEN: 'x' });
  };

  it('authority.yaml passes the authority schema (the kubernetes attestor key aside) and its policy grants the example pods', () => {
    const doc = authorityDoc();
    expect(doc.kubernetes).toEqual({});
    const { kubernetes: _attestor, ...rest } = doc;
    const { value, problems } = collectConfig(authoritySchema, rest);
    expect(problems).toEqual([]);
    const policy = compilePolicy(
      value!.policies.map((p) => ({ identities: p.identities, credentials: p.credentials, maxTtlMs: p.maxTtl })),
      value!.trustDomain,
    );
    // The examples' pods (namespace agents, service account doc-agent) may lease openai; others may not.
    expect(decide(policy, 'spiffe://leash.local/ns/agents/sa/doc-agent/pod/doc-agent-7d9f-x2x', 'openai')).toMatchObject({ allowed: true });
    expect(decide(policy, 'spiffe://leash.local/ns/agents/sa/default/pod/doc-agent-7d9f-x2x', 'openai')).toMatchObject({ allowed: false });
    // The authority's TLS certificate names the Service the sidecars call.
    expect(value!.hostnames).toContain('leash-authority.leash-system.svc');
  });

  // Unconditional: a skip on "the schema knows kubernetes" would hide the key's removal.
  it('authority.yaml passes the authority schema with its kubernetes attestor', () => {
    expect(collectConfig(authoritySchema, authorityDoc()).problems).toEqual([]);
  });

  const injectorDoc = () => {
    const cm = find(rendered.get('deploy/base')!, 'ConfigMap', 'leash-injector');
    return readDocument((cm.data as Record<string, string>)['injector.yaml']!, {});
  };

  it("the injector's route catalog: each route passes the sidecar route schema, agentEnv is NAME: string", () => {
    const doc = injectorDoc();
    expect(Object.keys(doc).sort()).toEqual(['authority', 'image', 'listen', 'routes', 'tls']);
    const routes = doc.routes as Record<string, Record<string, unknown>>;
    expect(Object.keys(routes).length).toBeGreaterThan(0);
    for (const [name, route] of Object.entries(routes)) {
      const { agentEnv, ...sidecarRoute } = route;
      // Checked inside a sidecar config like the one the injector writes (leased credentials
      // need an authority section; its bootstrap is the injector's business).
      const sidecar = { authority: { url: (doc.authority as { url: string }).url, caFile: '/etc/leash/ca/ca.pem', bootstrap: { joinToken: { env: 'UNUSED' } } }, routes: { [name]: sidecarRoute } };
      expect(collectConfig(sidecarSchema, sidecar).problems, name).toEqual([]);
      for (const [k, v] of Object.entries((agentEnv ?? {}) as Record<string, unknown>)) {
        expect(k, name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        expect(typeof v, `${name}.agentEnv.${k}`).toBe('string');
      }
    }
    expect(new URL((doc.authority as { url: string }).url).host).toBe('leash-authority.leash-system.svc:8443');
  });

  it('injector.yaml passes the injector config schema (as `leash injector` and `leash check` read it)', () => {
    expect(collectInjector(injectorDoc()).problems).toEqual([]);
  });

  it("redis-in-cluster-subscribed: the injector's config is the base's plus sidecars subscribed as leash-sidecar, the password from Secret leash-redis-sidecar", () => {
    const cm = find(rendered.get(SUBSCRIBED)!, 'ConfigMap', 'leash-injector');
    const { sidecar, ...rest } = readDocument((cm.data as Record<string, string>)['injector.yaml']!, {});
    expect(rest).toEqual(injectorDoc());
    expect(sidecar).toEqual({
      revocations: {
        redis: {
          url: 'redis://leash-sidecar@leash-redis.leash-system.svc:6379',
          password: { secretKeyRef: { name: 'leash-redis-sidecar', key: 'password' } },
        },
      },
    });
    const { value, problems } = collectInjector({ ...rest, sidecar });
    expect(problems).toEqual([]);
    expect(value!.secretFiles).toEqual([{ path: 'revocations-redis-password', secretKeyRef: { name: 'leash-redis-sidecar', key: 'password' } }]);
    // The host is the overlay's Redis Service.
    const svc = find(rendered.get(SUBSCRIBED)!, 'Service', 'leash-redis');
    expect(new URL((sidecar as { revocations: { redis: { url: string } } }).revocations.redis.url).host).toBe(`${svc.metadata.name}.${svc.metadata.namespace}.svc:6379`);
  });

  const manualDoc = () => {
    const cm = find(examples.get('deploy/examples/agent-manual.yaml')!, 'ConfigMap', 'doc-agent-leash');
    return readDocument((cm.data as Record<string, string>)['sidecar.yaml']!, { POD_NAME: 'doc-agent-7d9f-x2x' });
  };

  it("the hand-written sidecar's config passes the sidecar schema (bootstrap aside) and matches its container", () => {
    const doc = manualDoc() as { authority: { bootstrap: Record<string, unknown> } } & Record<string, unknown>;
    expect(doc.authority.bootstrap).toEqual({ kubernetes: { tokenFile: '/var/run/secrets/leash/token' } });
    const withJoin = { ...doc, authority: { ...doc.authority, bootstrap: { joinToken: { env: 'UNUSED' } } } };
    const { value, problems } = collectConfig(sidecarSchema, withJoin);
    expect(problems).toEqual([]);
    const pod = podSpecOf(find(examples.get('deploy/examples/agent-manual.yaml')!, 'Deployment', 'doc-agent'))!;
    const sidecar = pod.initContainers!.find((c) => c.name === 'leash')!;
    expect(sidecar.restartPolicy).toBe('Always');
    expect(sidecar.startupProbe).toMatchObject({ httpGet: { path: '/readyz', port: 'leash-admin' } });
    const adminPort = (sidecar.ports as Array<{ name: string; containerPort: number }>).find((p) => p.name === 'leash-admin')!.containerPort;
    expect(value!.admin.port).toBe(adminPort);
    expect(value!.admin.host).toBe('0.0.0.0');
    // The projected token: audience leash, at the path the config reads, mounted only into leash.
    const tokenVolume = pod.volumes!.find((v) => v.name === 'leash-token') as unknown as { projected: { sources: Array<{ serviceAccountToken?: { audience: string; path: string } }> } };
    expect(tokenVolume.projected.sources[0]!.serviceAccountToken).toMatchObject({ audience: 'leash', path: 'token' });
    const mount = (sidecar.volumeMounts as Array<{ name: string; mountPath: string }>).find((m) => m.name === 'leash-token')!;
    expect(`${mount.mountPath}/token`).toBe('/var/run/secrets/leash/token');
    for (const c of pod.containers) expect((c.volumeMounts as unknown[] | undefined) ?? [], c.name).toEqual([]);
    // The agent's base URL points at the sidecar's proxy port and route.
    const env = (pod.containers[0]!.env as Array<{ name: string; value: string }>).find((e) => e.name === 'OPENAI_BASE_URL')!;
    expect(env.value).toBe(`http://127.0.0.1:${value!.listen.port}/openai/v1`);
  });

  it(
    "the hand-written sidecar's config passes the sidecar schema with its kubernetes bootstrap",
    () => {
      expect(collectConfig(sidecarSchema, manualDoc()).problems).toEqual([]);
    },
  );

  it('the injected example opts in by label and annotation, naming only catalog routes', () => {
    const d = find(examples.get('deploy/examples/agent-injected.yaml')!, 'Deployment', 'doc-agent');
    const meta = (d.spec as { template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } } }).template.metadata;
    expect(meta.labels['leash.dev/inject']).toBe('true');
    expect(meta.annotations['leash.dev/inject']).toBe('true');
    const catalog = Object.keys(injectorDoc().routes as object);
    for (const r of meta.annotations['leash.dev/routes']!.split(',')) expect(catalog).toContain(r.trim());
  });
});

// The examples need no kubectl: they are validated, and their containers checked, in any case.
it('validates the example manifests and their containers without kubectl', async () => {
  if (!HAVE_KUBECTL) console.warn('deploy-manifests: kubectl missing; only deploy/examples were validated');
  const items = [...examples].flatMap(([source, objects]) => objects.map((object) => ({ source, object })));
  const { failures, validated } = await validateAll(items);
  expect(failures).toEqual([]);
  expect(validated).toBe(5);
  expect(items.flatMap(({ object }) => containerProblems(object))).toEqual([]);
});
