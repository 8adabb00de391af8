import { X509Certificate as X509 } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { Pod } from 'kubernetes-models/v1/Pod';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { tlsFiles } from '../../src/bin/injector.js';
import { parseInjectorConfig, type Injector } from '../../src/config/injector.js';
import { collectConfig, readDocument } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { InjectorServer } from '../../src/injector/server.js';
import { LogSink } from '../helpers/harness.js';
import { containerEnv } from '../helpers/kubelet-env.js';
import { issueServerCert, makeCa, type TestCa } from '../helpers/proxy-tls.js';

/**
 * leash injector over real HTTPS with a test CA: real AdmissionReview v1 JSON (a Pod as a
 * ReplicaSet creates it: generateName, no name, two containers, existing env) in, the
 * returned JSONPatch applied, the result validated against the Kubernetes Pod schema
 * (kubernetes-models), and the injected sidecar config validated as a sidecar file.
 */

const CONFIG = `
listen: "127.0.0.1:0"
tls: { certFile: CERT, keyFile: KEY, reloadInterval: 1h }
log: { level: debug }
image: ghcr.io/example/leash:0.9.0
authority:
  url: https://leash-authority.leash-system.svc:8443
sidecar:
  revocations: { redis: "redis://redis.leash-system.svc:6379" }
routes:
  openai:
    upstream: https://api.openai.com
    credential: openai
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["POST /v1/chat/completions", "GET /v1/models"]
    agentEnv: { OPENAI_BASE_URL: "{{baseUrl}}/v1" }
  search:
    upstream: https://search.example.com/api
    credential: search
    inject: { query: key }
    allow: ["GET /search"]
    agentEnv: { SEARCH_BASE_URL: "{{baseUrl}}", SEARCH_API_KEY: "unused-by-leash" }
  github:
    upstream: https://api.github.com
    credential: github
    inject: { header: authorization, format: "token {{credential}}" }
    allow: ["GET /repos/*"]
`;

type Json = Record<string, any>;
const fixture = (): Json => JSON.parse(readFileSync(new URL('../fixtures/admission/deployment-pod.json', import.meta.url), 'utf8')) as Json;

/** RFC 6902 `add` (the only op the injector emits), on a copy. */
function applyPatch(doc: Json, ops: Array<{ op: string; path: string; value: unknown }>): Json {
  const out = structuredClone(doc);
  for (const { op, path, value } of ops) {
    expect(op).toBe('add');
    const parts = path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop()!;
    let target: any = out;
    for (const p of parts) {
      target = Array.isArray(target) ? target[Number(p)] : target[p];
      expect(target, `patch path ${path} must exist up to its last segment`).toBeDefined();
    }
    if (Array.isArray(target)) {
      if (last === '-') target.push(value);
      else {
        const i = Number(last);
        expect(i).toBeLessThanOrEqual(target.length);
        target.splice(i, 0, value);
      }
    } else {
      expect(target[last], `add at ${path} must not replace a member`).toBeUndefined();
      target[last] = value;
    }
  }
  return out;
}

interface Reply {
  status: number;
  json: Json;
  certSerial: string;
}

let ca: TestCa;
let dir: string;
let server: InjectorServer;
let port: number;
let injector: Injector;
const logs = new LogSink();

function post(body: string | Buffer, contentType = 'application/json'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      // A fresh connection each time (agent: false), so every call is a TLS handshake; SNI as the API server sends it.
      { host: '127.0.0.1', port, servername: 'localhost', path: '/mutate', method: 'POST', ca: ca.certPem, agent: false, headers: { 'content-type': contentType } },
      (res) => {
        const certSerial = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Json, certSerial }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const review = (r: Json) => post(JSON.stringify(r));
const patchOf = (reply: Reply) => (reply.json.response.patch ? JSON.parse(Buffer.from(reply.json.response.patch as string, 'base64').toString('utf8')) : undefined);
const withAnnotations = (annotations: Record<string, string> | undefined): Json => {
  const r = fixture();
  if (annotations === undefined) delete r.request.object.metadata.annotations;
  else r.request.object.metadata.annotations = annotations;
  return r;
};

beforeAll(async () => {
  ca = makeCa();
  dir = mkdtempSync(join(tmpdir(), 'leash-injector-'));
  const cert = issueServerCert(ca);
  writeFileSync(join(dir, 'tls.crt'), cert.certPem);
  writeFileSync(join(dir, 'tls.key'), cert.keyPem);
  injector = parseInjectorConfig(CONFIG.replace('CERT', join(dir, 'tls.crt')).replace('KEY', join(dir, 'tls.key')), {});
  server = new InjectorServer({
    injector,
    tls: tlsFiles(join(dir, 'tls.crt'), join(dir, 'tls.key')),
    logger: pino({ level: 'debug' }, logs),
    reloadInterval: injector.config.tls.reloadInterval,
  });
  port = (await server.listen('127.0.0.1', 0)).port;
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('leash injector /mutate', () => {
  it('injects a native sidecar, the token volume and agentEnv into a Deployment-created pod; the result is a valid Pod', async () => {
    const input = fixture();
    const reply = await review(input);
    expect(reply.status).toBe(200);
    const { response } = reply.json;
    expect(reply.json).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' });
    expect(response).toMatchObject({ uid: input.request.uid, allowed: true, patchType: 'JSONPatch' });

    const pod = applyPatch(input.request.object, patchOf(reply));
    // Throws with the schema path on any invalid field (kubernetes-models' JSON schema of core/v1 Pod).
    expect(() => new Pod(pod as never).validate()).not.toThrow();

    const spec = pod.spec;
    expect(spec.initContainers).toHaveLength(1);
    const leash = spec.initContainers[0];
    expect(leash).toMatchObject({
      name: 'leash',
      image: 'ghcr.io/example/leash:0.9.0',
      restartPolicy: 'Always',
      args: ['sidecar', '--config-env', 'LEASH_CONFIG'],
      startupProbe: { httpGet: { path: '/readyz', port: 15090 } },
      readinessProbe: { httpGet: { path: '/readyz', port: 15090 } },
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65532,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      },
      resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '500m', memory: '256Mi' } },
      volumeMounts: [{ name: 'leash-token', mountPath: '/var/run/secrets/leash', readOnly: true }],
    });
    expect(leash.env[0]).toEqual({ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    // The pod's own volumes are kept; the projected token (audience leash) and the authority CA are added.
    expect(spec.volumes.map((v: Json) => v.name)).toEqual(['kube-api-access-x7k2p', 'scratch', 'leash-token']);
    expect(spec.volumes[2].projected.sources).toEqual([
      { serviceAccountToken: { audience: 'leash', expirationSeconds: 3600, path: 'token' } },
      { configMap: { name: 'leash-authority-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
    ]);

    // agentEnv in every app container; an existing variable of the same name keeps its value.
    const env = (i: number) => Object.fromEntries(spec.containers[i].env.map((e: Json) => [e.name, e.value]));
    expect(env(0)).toEqual({
      LOG_LEVEL: 'info',
      SEARCH_BASE_URL: 'https://search.internal.example/v2',
      OPENAI_BASE_URL: 'http://127.0.0.1:15080/openai/v1',
      SEARCH_API_KEY: 'unused-by-leash',
    });
    expect(env(1)).toEqual({ OPENAI_BASE_URL: 'http://127.0.0.1:15080/openai/v1', SEARCH_BASE_URL: 'http://127.0.0.1:15080/search', SEARCH_API_KEY: 'unused-by-leash' });
    expect(response.warnings).toEqual(['leash: container "agent" already sets SEARCH_BASE_URL; kept its value']);
    expect(pod.metadata.annotations['leash.dev/status']).toBe('injected');
    expect(pod.metadata.annotations['leash.dev/routes']).toBe('openai, search');
    // The label the authority's NetworkPolicy admits, added beside the pod's own labels.
    expect(pod.metadata.labels).toEqual({ app: 'research-agent', 'pod-template-hash': '7d9c8b6f5d', 'leash.dev/injected': 'true' });
    expect(pod.metadata.name).toBeUndefined();
  });

  it('hands the sidecar a config that validates as a sidecar file, with the routes as written and the kubernetes bootstrap', async () => {
    const reply = await review(fixture());
    const pod = applyPatch(fixture().request.object, patchOf(reply));
    // As the process gets it: after the kubelet's expansion of env values (POD_NAME comes first).
    const text = containerEnv(pod.spec.initContainers[0].env, { 'metadata.name': 'research-agent-7d9c8b6f5d-x2xkq' }).LEASH_CONFIG!;
    const doc = parse(text) as Json;
    expect(doc.instance).toEqual({ id: '${POD_NAME}' });
    expect(doc.listen).toBe('127.0.0.1:15080');
    expect(doc.admin).toBe('0.0.0.0:15090');
    expect(doc.authority).toEqual({
      url: 'https://leash-authority.leash-system.svc:8443',
      caFile: '/var/run/secrets/leash/ca.crt',
      bootstrap: { kubernetes: { tokenFile: '/var/run/secrets/leash/token' } },
    });
    expect(doc.revocations).toEqual({ redis: 'redis://redis.leash-system.svc:6379' });
    expect(Object.keys(doc.routes)).toEqual(['openai', 'search']);
    expect(doc.routes.openai).toEqual({
      upstream: 'https://api.openai.com',
      credential: 'openai',
      inject: { header: 'authorization', format: 'Bearer {{credential}}' },
      allow: ['POST /v1/chat/completions', 'GET /v1/models'],
    });

    // As the sidecar reads it (leash sidecar --config-env LEASH_CONFIG → the sidecar schema, ${POD_NAME} expanded).
    const expanded = readDocument(text, { POD_NAME: 'research-agent-7d9c8b6f5d-x2xkq' });
    const { value, problems } = collectConfig(sidecarSchema, expanded);
    expect(problems).toEqual([]);
    expect(value!.instance.id).toBe('research-agent-7d9c8b6f5d-x2xkq');
    expect(value!.authority!.bootstrap).toEqual({ kubernetes: { tokenFile: '/var/run/secrets/leash/token' } });
  });

  it("the sidecar's config reaches it as written through the kubelet's $(VAR) / $$ expansion of env values", async () => {
    // The kubelet expands every env value of the pod spec before the sidecar reads it:
    // `$$` → `$` and `$(POD_NAME)` → the pod's name (defined just before LEASH_CONFIG).
    // Catalog text holding either, or a literal `${` (written `$${` in the injector's file),
    // must reach the sidecar unchanged.
    const format = 'Key {{credential}} a$$b $(POD_NAME) ${NOT_A_VAR}';
    const config = CONFIG.replace('CERT', join(dir, 'tls.crt'))
      .replace('KEY', join(dir, 'tls.key'))
      .replace('format: "token {{credential}}"', () => `format: ${JSON.stringify(format.split('${').join('$${'))}`);
    const dollars = parseInjectorConfig(config, {});
    expect((dollars.catalog.github!.inject as { format: string }).format).toBe(format);
    const { mutatePod } = await import('../../src/injector/mutate.js');
    const input = fixture();
    input.request.object.metadata.annotations['leash.dev/routes'] = 'github';
    const decision = mutatePod(dollars, input.request.object);
    expect(decision.allowed).toBe(true);
    const pod = applyPatch(input.request.object, (decision as { patch: Array<{ op: string; path: string; value: unknown }> }).patch);
    const podName = 'research-agent-7d9c8b6f5d-x2xkq';
    const env = containerEnv(pod.spec.initContainers[0].env, { 'metadata.name': podName });
    const { value, problems } = collectConfig(sidecarSchema, readDocument(env.LEASH_CONFIG!, env));
    expect(problems).toEqual([]);
    expect(value!.routes.github!.inject).toEqual({ header: 'authorization', format });
    expect(value!.instance.id).toBe(podName);
  });

  it('a container taking variables through envFrom gets the agent variables in env, and a warning that they win over envFrom', async () => {
    const input = fixture();
    const [agent, exporter] = input.request.object.spec.containers;
    agent.envFrom = [{ configMapRef: { name: 'agent-settings' } }];
    exporter.envFrom = [{ secretRef: { name: 'exporter-settings', optional: true }, prefix: 'X_' }];
    const reply = await review(input);
    const pod = applyPatch(input.request.object, patchOf(reply));
    expect(() => new Pod(pod as never).validate()).not.toThrow();
    // envFrom kept as written; the agent variables in env, the container's own env kept.
    expect(pod.spec.containers[0].envFrom).toEqual([{ configMapRef: { name: 'agent-settings' } }]);
    expect(pod.spec.containers[0].env.map((e: Json) => e.name)).toEqual(['LOG_LEVEL', 'SEARCH_BASE_URL', 'OPENAI_BASE_URL', 'SEARCH_API_KEY']);
    expect(pod.spec.containers[1].env.map((e: Json) => e.name)).toEqual(['OPENAI_BASE_URL', 'SEARCH_BASE_URL', 'SEARCH_API_KEY']);
    // Kubernetes gives env precedence over envFrom, and the webhook cannot read the ConfigMap: said, per container.
    expect(reply.json.response.warnings).toEqual([
      'leash: container "agent" already sets SEARCH_BASE_URL; kept its value',
      'leash: container "agent" takes variables from envFrom; OPENAI_BASE_URL, SEARCH_API_KEY set by leash in env replace any of the same name there (set yours in env to keep it)',
      'leash: container "metrics-exporter" takes variables from envFrom; OPENAI_BASE_URL, SEARCH_BASE_URL, SEARCH_API_KEY set by leash in env replace any of the same name there (set yours in env to keep it)',
    ]);
  });

  it('is idempotent: a second review of the injected pod adds nothing', async () => {
    const first = await review(fixture());
    const injected = fixture();
    injected.request.object = applyPatch(injected.request.object, patchOf(first));
    const second = await review(injected);
    expect(second.json.response).toEqual({ uid: injected.request.uid, allowed: true });
    // Also without the status annotation (stripped by someone): the leash init container is enough.
    delete injected.request.object.metadata.annotations['leash.dev/status'];
    expect((await review(injected)).json.response).toEqual({ uid: injected.request.uid, allowed: true });
  });

  it('reinvoked after a later webhook added an app container: that container gets the agent variables, nothing else changes', async () => {
    const first = await review(fixture());
    const injected = fixture();
    injected.request.object = applyPatch(injected.request.object, patchOf(first));
    injected.request.object.spec.containers.push({ name: 'late', image: 'example/late:1' });
    const again = await review(injected);
    expect(again.json.response).toMatchObject({ allowed: true });
    const ops = patchOf(again) as Array<{ op: string; path: string; value: unknown }>;
    const late = injected.request.object.spec.containers.length - 1;
    expect(ops.map((o) => o.path)).toEqual([`/spec/containers/${late}/env`]);
    const pod = applyPatch(injected.request.object, ops);
    expect(() => new Pod(pod as never).validate()).not.toThrow();
    const names = (pod.spec.containers[late].env as Array<{ name: string }>).map((e) => e.name);
    expect(names.length).toBeGreaterThan(0);
    // The same variables the first pass gave the original app container.
    const original = new Set((pod.spec.containers[0].env as Array<{ name: string }>).map((e) => e.name));
    for (const n of names) expect(original.has(n), n).toBe(true);
    // The sidecar and the volume are not added twice.
    expect(pod.spec.initContainers.filter((c: { name: string }) => c.name === 'leash')).toHaveLength(1);
  });

  it('reinvoked: a container a later webhook added is held to the same rules (no leash-token, no leash-audience token, no privilege)', async () => {
    const first = await review(fixture());
    const injected = fixture();
    injected.request.object = applyPatch(injected.request.object, patchOf(first));
    const added: Array<[string, (pod: Json) => void]> = [
      ['mounting leash-token', (pod) => pod.spec.containers.push({ name: 'late', image: 'example/late:1', volumeMounts: [{ name: 'leash-token', mountPath: '/t' }] })],
      ['an init container mounting leash-token', (pod) => pod.spec.initContainers.push({ name: 'late-init', image: 'example/late:1', volumeMounts: [{ name: 'leash-token', mountPath: '/t' }] })],
      [
        'with a leash-audience token of its own',
        (pod) => {
          pod.spec.volumes.push({ name: 'late-token', projected: { sources: [{ serviceAccountToken: { audience: 'leash', path: 't' } }] } });
          pod.spec.containers.push({ name: 'late', image: 'example/late:1', volumeMounts: [{ name: 'late-token', mountPath: '/t' }] });
        },
      ],
      ['privileged', (pod) => pod.spec.containers.push({ name: 'late', image: 'example/late:1', securityContext: { privileged: true } })],
    ];
    for (const [what, add] of added) {
      const again = structuredClone(injected);
      add(again.request.object);
      const reply = await review(again);
      expect(reply.json.response, what).toMatchObject({ allowed: false });
      expect(reply.json.response.patch, what).toBeUndefined();
    }
  });

  it('puts nothing of the pod into a patch path: names and values with "/", "~", quotes and dots never steer the JSONPatch', async () => {
    const hostile = ['a/b', '~1spec~1containers', '~0', '../../spec', '"}]', 'leash.dev~1status', '/metadata/labels'];
    for (const h of hostile) {
      const r = withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai', [h]: h, [`x.dev/${h}`]: h });
      r.request.object.metadata.labels[`y.dev/${h.replace(/[^a-z0-9.-]/gi, 'x')}`] = h;
      r.request.object.spec.containers[0].name = h;
      r.request.object.spec.containers[0].env.push({ name: h, value: h });
      const reply = await review(r);
      expect(reply.json.response, h).toMatchObject({ allowed: true });
      const ops = patchOf(reply) as Array<{ op: string; path: string; value: unknown }>;
      for (const { op, path } of ops) {
        expect(op).toBe('add');
        expect(path, h).toMatch(/^\/(spec\/initContainers(\/0)?|spec\/volumes(\/-)?|spec\/containers\/\d+\/env(\/-)?|metadata\/annotations\/leash\.dev~1status|metadata\/labels\/leash\.dev~1injected)$/);
      }
      const pod = applyPatch(r.request.object, ops);
      expect(pod.metadata.annotations[h], h).toBe(h);
      expect(pod.metadata.annotations['leash.dev/status'], h).toBe('injected');
    }
  });

  it('refuses a hostNetwork pod (the proxy would listen on the node\'s loopback)', async () => {
    const r = withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' });
    r.request.object.spec.hostNetwork = true;
    const reply = await review(r);
    expect(reply.status).toBe(200);
    expect(reply.json.response).toMatchObject({ allowed: false, status: { message: expect.stringContaining('hostNetwork') } });
    expect(reply.json.response.patch).toBeUndefined();
  });

  it('refuses a pod with shareProcessNamespace (its containers could signal or trace the sidecar)', async () => {
    for (const share of [true, false]) {
      const r = withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' });
      r.request.object.spec.shareProcessNamespace = share;
      const reply = await review(r);
      expect(reply.status).toBe(200);
      if (share) {
        expect(reply.json.response).toMatchObject({ allowed: false, status: { message: expect.stringContaining('shareProcessNamespace') } });
        expect(reply.json.response.patch).toBeUndefined();
      } else {
        expect(reply.json.response).toMatchObject({ allowed: true });
        expect(reply.json.response.patch).toBeDefined();
      }
    }
  });

  it('refuses a hostPID pod (every container would see the sidecar\'s process, as with shareProcessNamespace)', async () => {
    for (const hostPID of [true, false]) {
      const r = withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' });
      r.request.object.spec.hostPID = hostPID;
      const reply = await review(r);
      expect(reply.status).toBe(200);
      if (hostPID) {
        expect(reply.json.response).toMatchObject({ allowed: false, status: { message: expect.stringContaining('hostPID') } });
        expect(reply.json.response.patch).toBeUndefined();
      } else {
        expect(reply.json.response).toMatchObject({ allowed: true });
      }
    }
  });

  it('refuses a pod whose app (or init) container mounts the leash-token volume the injector adds', async () => {
    for (const where of ['containers', 'initContainers'] as const) {
      const r = withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' });
      const spec = r.request.object.spec;
      if (where === 'initContainers') spec.initContainers = [{ name: 'fetch', image: 'example/fetch:1', volumeMounts: [{ name: 'leash-token', mountPath: '/t' }] }];
      else spec.containers[0].volumeMounts.push({ name: 'leash-token', mountPath: '/steal', readOnly: true });
      const reply = await review(r);
      expect(reply.json.response, where).toMatchObject({ allowed: false, status: { message: expect.stringContaining('mounts leash-token') } });
      expect(reply.json.response.patch).toBeUndefined();
    }
  });

  it('refuses a pod where another container could hold the pod\'s identity some other way: its own leash-audience token, the kubelet\'s directory, the host\'s /proc or runtime socket, privilege', async () => {
    const leashToken = (name: string) => ({ name, projected: { sources: [{ serviceAccountToken: { audience: 'leash', expirationSeconds: 600, path: 't' } }] } });
    const hostPath = (name: string, path: string) => ({ name, hostPath: { path } });
    // [case, volumes added, container mount (volume name) or privileged, refused?, message part]
    const cases: Array<[string, Json[], { mount?: string; privileged?: boolean; init?: boolean }, boolean, string]> = [
      ['a second projected token for audience leash, in the app', [leashToken('my-token')], { mount: 'my-token' }, true, 'audience "leash"'],
      ['the same, in an init container', [leashToken('my-token')], { mount: 'my-token', init: true }, true, 'audience "leash"'],
      ['the same among other sources', [{ name: 'mixed', projected: { sources: [{ configMap: { name: 'x' } }, { serviceAccountToken: { audience: 'leash', path: 't' } }] } }], { mount: 'mixed' }, true, 'audience "leash"'],
      ...[
        '/',
        '/var',
        '/var/lib',
        '/var/lib/kubelet',
        '/var/lib/kubelet/',
        '/var/lib/kubelet/pods',
        '/var//lib/./kubelet/pods/abc/volumes',
        '/var/lib/kubelet/../kubelet',
        '/tmp/../var/lib',
        '/proc',
        '/proc/1',
        '/run/containerd/containerd.sock',
        '/var/run/docker.sock',
        '/run/crio/crio.sock',
        '/var/lib/containerd',
        '/run',
        '/var/run',
      ].map(
        (path): [string, Json[], { mount: string }, boolean, string] => [`hostPath ${path}`, [hostPath('host', path)], { mount: 'host' }, true, 'hostPath'],
      ),
      ['a privileged app container', [], { privileged: true }, true, 'privileged'],
      ['a privileged init container', [], { privileged: true, init: true }, true, 'privileged'],
      // Not refused: a token for another audience (e.g. Vault's), an unrelated hostPath, one not mounted, privileged: false.
      ['a projected token for audience vault', [{ name: 'vault-token', projected: { sources: [{ serviceAccountToken: { audience: 'vault', path: 't' } }] } }], { mount: 'vault-token' }, false, ''],
      ['hostPath /etc/ssl/certs', [hostPath('certs', '/etc/ssl/certs')], { mount: 'certs' }, false, ''],
      ['hostPath /var/lib/kubeletx', [hostPath('near', '/var/lib/kubeletx')], { mount: 'near' }, false, ''],
      ['hostPath /usr/local/nvidia', [hostPath('gpu', '/usr/local/nvidia')], { mount: 'gpu' }, false, ''],
      ['hostPath /procfs', [hostPath('procfs', '/procfs')], { mount: 'procfs' }, false, ''],
      // An agent's socket beside the runtime's (Datadog's admission controller mounts this one).
      ['hostPath /var/run/datadog', [hostPath('dd', '/var/run/datadog')], { mount: 'dd' }, false, ''],
      ['a leash-audience token no container mounts', [leashToken('unused')], {}, false, ''],
      ['privileged: false', [], { privileged: false }, false, ''],
    ];
    for (const [name, volumes, how, refused, part] of cases) {
      const r = withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai' });
      const spec = r.request.object.spec;
      spec.volumes.push(...volumes);
      const container: Json = how.init ? { name: 'fetch', image: 'example/fetch:1' } : spec.containers[0];
      if (how.init) spec.initContainers = [container];
      if (how.mount) (container.volumeMounts ??= []).push({ name: how.mount, mountPath: '/steal', readOnly: true });
      if (how.privileged !== undefined) container.securityContext = { ...(container.securityContext ?? {}), privileged: how.privileged };
      const reply = await review(r);
      expect(reply.status, name).toBe(200);
      if (refused) {
        expect(reply.json.response, name).toMatchObject({ allowed: false, status: { message: expect.stringContaining(part) } });
        expect(reply.json.response.patch, name).toBeUndefined();
      } else {
        expect(reply.json.response, name).toMatchObject({ allowed: true, patchType: 'JSONPatch' });
      }
    }
  });

  it('route names that every JavaScript object has (constructor, __proto__, toString…) are unknown routes, not a crash', async () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf']) {
      const reply = await review(withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': name }));
      expect(reply.status, name).toBe(200);
      expect(reply.json.response, name).toMatchObject({ allowed: false, status: { message: expect.stringContaining('unknown route') } });
    }
  });

  it('never patches a pod that does not ask for injection', async () => {
    for (const annotations of <Array<Record<string, string> | undefined>>[undefined, { 'leash.dev/routes': 'openai' }, { 'leash.dev/inject': 'false', 'leash.dev/routes': 'openai' }, { 'leash.dev/inject': 'yes' }]) {
      const reply = await review(withAnnotations(annotations));
      expect(reply.status).toBe(200);
      expect(reply.json.response).toEqual({ uid: fixture().request.uid, allowed: true });
    }
    // Nor anything other than a Pod being created.
    const update = fixture();
    update.request.operation = 'UPDATE';
    expect((await review(update)).json.response).toEqual({ uid: update.request.uid, allowed: true });
  });

  it('refuses a pod naming an unknown route, with its name', async () => {
    const reply = await review(withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai,anthropic' }));
    expect(reply.status).toBe(200);
    expect(reply.json.response.allowed).toBe(false);
    expect(reply.json.response.patch).toBeUndefined();
    expect(reply.json.response.status.message).toContain('"anthropic"');
    expect(reply.json.response.status.message).toContain('openai, search, github');
    // And one that names none.
    const none = await review(withAnnotations({ 'leash.dev/inject': 'true' }));
    expect(none.json.response).toMatchObject({ allowed: false, status: { message: expect.stringContaining('leash.dev/routes') } });
  });

  it('takes ports from annotations, and refuses ones an app container already declares', async () => {
    const custom = await review(withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'github', 'leash.dev/port': '17000', 'leash.dev/admin-port': '17001' }));
    const pod = applyPatch(fixture().request.object, patchOf(custom));
    expect(() => new Pod(pod as never).validate()).not.toThrow();
    expect(pod.spec.initContainers[0].startupProbe.httpGet.port).toBe(17001);
    expect(parse(pod.spec.initContainers[0].env[1].value as string)).toMatchObject({ listen: '127.0.0.1:17000', admin: '0.0.0.0:17001' });
    // github has no agentEnv: the app containers are untouched.
    expect(pod.spec.containers).toEqual(fixture().request.object.spec.containers);
    // A route with agentEnv: {{baseUrl}} names the annotated port.
    const openai = applyPatch(fixture().request.object, patchOf(await review(withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai', 'leash.dev/port': '17000', 'leash.dev/admin-port': '17001' }))));
    expect(openai.spec.containers[1].env).toEqual([{ name: 'OPENAI_BASE_URL', value: 'http://127.0.0.1:17000/openai/v1' }]);

    const clash = await review(withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai', 'leash.dev/port': '8080' }));
    expect(clash.json.response).toMatchObject({ allowed: false, status: { message: expect.stringContaining('"agent" declares port 8080') } });
    const bad = await review(withAnnotations({ 'leash.dev/inject': 'true', 'leash.dev/routes': 'openai', 'leash.dev/admin-port': '99999' }));
    expect(bad.json.response).toMatchObject({ allowed: false, status: { message: expect.stringContaining('leash.dev/admin-port must be a port number') } });
  });

  it('answers a malformed review with a 4xx and keeps serving', async () => {
    expect((await post('{"apiVersion": "admission.k8s.io/v1", "kind": ')).status).toBe(400);
    expect((await post(JSON.stringify({ ...fixture(), apiVersion: 'admission.k8s.io/v1beta1' }))).status).toBe(400);
    expect((await post(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }))).status).toBe(400);
    const noUid = fixture();
    delete noUid.request.uid;
    expect((await review(noUid)).status).toBe(400);
    const noObject = fixture();
    noObject.request.object = 'a pod';
    expect((await review(noObject)).status).toBe(400);
    expect((await post('[]')).status).toBe(400);
    expect((await post('{}', 'text/plain')).status).toBe(415);
    expect((await post(Buffer.alloc(9 * 1024 * 1024, 0x20))).status).toBe(413);
    // Still serving, and deciding.
    const ok = await review(fixture());
    expect(ok.status).toBe(200);
    expect(ok.json.response.allowed).toBe(true);
  });

  it('never logs the pod spec (env values stay out of the log)', () => {
    const text = logs.lines.join('\n');
    expect(text).toContain('admission review');
    expect(text).not.toContain('unused-by-leash');
    expect(text).not.toContain('search.internal.example');
  });

  it('presents a replaced certificate on the next handshake, and keeps the old one when the new pair does not load', async () => {
    const before = await review(fixture());
    const next = issueServerCert(ca);
    // As a Secret volume update does: new files renamed into place.
    writeFileSync(join(dir, 'tls.crt.new'), next.certPem);
    writeFileSync(join(dir, 'tls.key.new'), next.keyPem);
    renameSync(join(dir, 'tls.crt.new'), join(dir, 'tls.crt'));
    renameSync(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
    const after = await review(fixture());
    expect(after.certSerial).not.toBe(before.certSerial);
    expect(after.certSerial.toLowerCase()).toBe(new X509(next.certPem).serialNumber.toLowerCase());

    // A half-rotated pair (new cert, old key): refused, the current certificate keeps serving.
    writeFileSync(join(dir, 'tls.crt'), issueServerCert(ca).certPem);
    const half = await review(fixture());
    expect(half.status).toBe(200);
    expect(half.certSerial).toBe(after.certSerial);
    expect(logs.lines.some((l) => l.includes('do not load; keeping the current certificate'))).toBe(true);
  });
});

describe('TlsReloader (the timer path, for clients without SNI)', () => {
  it('takes a changed pair once, refuses one that does not load, and retries it after the fix', async () => {
    const { TlsReloader } = await import('../../src/injector/server.js');
    const a = issueServerCert(ca);
    const b = issueServerCert(ca);
    let files = { stamp: '1', pair: a };
    const taken: string[] = [];
    const reloader = new TlsReloader({ stamp: () => files.stamp, read: () => files.pair }, pino({ level: 'silent' }), (p) => taken.push(p.certPem));
    expect(reloader.check()).toBe(false);
    files = { stamp: '2', pair: { certPem: b.certPem, keyPem: a.keyPem } };
    expect(reloader.check()).toBe(false);
    expect(reloader.currentPair).toBe(a);
    files = { stamp: '3', pair: b }; // the key lands
    expect(reloader.check()).toBe(true);
    expect(reloader.check()).toBe(false);
    expect(taken).toEqual([b.certPem]);
  });
});
