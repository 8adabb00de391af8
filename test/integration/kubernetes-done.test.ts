import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pod } from 'kubernetes-models/v1/Pod';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { kubernetesInputs } from '../../src/bin/authority.js';
import { bootstrapTokenReader } from '../../src/bin/load.js';
import { authoritySchema } from '../../src/config/authority.js';
import { parseInjectorConfig } from '../../src/config/injector.js';
import { parseConfig, readDocument } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { mutatePod, type PatchOp } from '../../src/injector/mutate.js';
import { assembleSidecar } from '../../src/sidecar/assemble.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { startKubeApi, type KubeApi } from '../helpers/kube-apiserver.js';
import { containerEnv } from '../helpers/kubelet-env.js';

/**
 * Issue 10's "done when", as far as a machine without a cluster can take it: deploy/ as
 * rendered (`kubectl kustomize deploy/base`) and the annotated example Deployment, put
 * together. The injector, with the base's injector.yaml, mutates the example's pod; the
 * injected sidecar reads the LEASH_CONFIG the kubelet would hand it and bootstraps with a
 * token bound to that pod (of the audience the patched pod's projected volume names); the
 * authority runs the base's authority.yaml (its trust domain, policies, identity TTL and
 * `kubernetes: {}`, resolved from KUBERNETES_SERVICE_HOST as in a pod) against the stand-in
 * API server. The agent's own variable (OPENAI_BASE_URL) then reaches the upstream with the
 * leased key, under the pod's SPIFFE ID. No token is handed out by hand.
 *
 * Replaced, because they are the cluster's: file paths under /var/run/secrets and /etc
 * (the same files, in a temporary directory), the Service addresses (127.0.0.1), the
 * upstream (a local server), Redis (the authority's in-memory store) and the credential's
 * source (an env var in place of the Secret's file). Everything else is deploy/'s.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HAVE_KUBECTL = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 10_000 }).status === 0;
if (!HAVE_KUBECTL) console.warn('kubernetes-done: kubectl not found on PATH: deploy/base is NOT rendered or tested (install kubectl)');

type Json = Record<string, any>;
const OPENAI_KEY = 'sk-done-when-test-0000000000000000';

let api: KubeApi | undefined;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Sidecar | undefined;
let dir: string | undefined;

afterEach(async () => {
  await sidecar?.stop();
  await upstream?.close();
  await authority?.stop();
  await api?.close();
  sidecar = upstream = authority = api = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function applyPatch(doc: Json, ops: readonly PatchOp[]): Json {
  const out = structuredClone(doc);
  for (const { path, value } of ops) {
    const parts = path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop()!;
    let target: any = out;
    for (const p of parts) target = Array.isArray(target) ? target[Number(p)] : target[p];
    if (Array.isArray(target)) {
      if (last === '-') target.push(value);
      else target.splice(Number(last), 0, value);
    } else target[last] = value;
  }
  return out;
}

describe.skipIf(!HAVE_KUBECTL)('deploy/ + an annotated Deployment: per-pod identity and leases, no token by hand', () => {
  it("the example pod, injected with the base's catalog, leases openai from the base's authority as spiffe://…/ns/agents/sa/doc-agent/pod/<name>", async () => {
    const rendered = parseAllDocuments(execFileSync('kubectl', ['kustomize', join(ROOT, 'deploy/base')], { encoding: 'utf8', timeout: 60_000 })).map((d) => d.toJS() as Json);
    const configMap = (name: string) => rendered.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name)!.data as Record<string, string>;
    const example = parseAllDocuments(readFileSync(join(ROOT, 'deploy/examples/agent-injected.yaml'), 'utf8')).map((d) => d.toJS() as Json);
    const deployment = example.find((o) => o.kind === 'Deployment')!;
    dir = mkdtempSync(join(tmpdir(), 'leash-done-'));

    // The pod a ReplicaSet creates from the template, through the injector's decision.
    const podName = 'doc-agent-7d9f6c5b4-x2x4q';
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { ...structuredClone(deployment.spec.template.metadata), generateName: 'doc-agent-7d9f6c5b4-', namespace: deployment.metadata.namespace }, spec: structuredClone(deployment.spec.template.spec) };
    const injectorYaml = configMap('leash-injector')['injector.yaml']!;
    const injector = parseInjectorConfig(injectorYaml, {});
    const decision = mutatePod(injector, pod);
    if (!decision.allowed) throw new Error(decision.message);
    const patched = applyPatch(pod, decision.patch!);
    expect(() => new Pod(patched as never).validate()).not.toThrow();
    const leash = patched.spec.initContainers.find((c: Json) => c.name === 'leash');
    const tokenSource = patched.spec.volumes.find((v: Json) => v.name === 'leash-token').projected.sources.find((s: Json) => s.serviceAccountToken).serviceAccountToken;

    // The stand-in API server knows the token the kubelet would project for this pod.
    api = await startKubeApi();
    const podToken = api.mint({ namespace: pod.metadata.namespace, serviceAccount: pod.spec.serviceAccountName, pod: { name: podName, uid: '5d0c2a1e-9f3b-4c7d-8e6a-1b2c3d4e5f60' }, audiences: [tokenSource.audience] });
    writeFileSync(join(dir, 'pod-token'), podToken);
    writeFileSync(join(dir, 'kube-ca.crt'), api.caPem);
    writeFileSync(join(dir, 'authority-token'), api.reviewerToken);

    // The base's authority.yaml: its own trust domain, identity, attestor and policies.
    const base = readDocument(configMap('leash-authority')['authority.yaml']!, { LEASH_REDIS_URL: 'redis://unused:6379', LEASH_ADMIN_TOKEN: 'unused' }) as Json;
    const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port), OPENAI_KEY };
    const credentials = Object.fromEntries(Object.entries(base.credentials as Json).map(([name, c]) => [name, { ...c, source: { env: 'OPENAI_KEY' } }]));
    const config = {
      trustDomain: base.trustDomain,
      identity: base.identity,
      kubernetes: { ...base.kubernetes, caFile: join(dir, 'kube-ca.crt'), tokenFile: join(dir, 'authority-token') },
      credentials,
      policies: base.policies,
    };
    const parsed = parseConfig(authoritySchema, JSON.stringify({ listen: '127.0.0.1:0', ...config }), env);
    authority = await startAuthority(config, { env, kubernetes: kubernetesInputs(parsed, env) });
    writeFileSync(join(dir, 'authority-ca.crt'), authority.caPem);

    let seen: { authorization?: string; path?: string } | undefined;
    upstream = await startUpstream((req, res) => {
      seen = { authorization: req.headers.authorization, path: req.url };
      res.setHeader('content-type', 'application/json');
      res.end('{"ok":true}');
    });

    // The sidecar's environment as the kubelet gives it, then its config as it reads it;
    // only the cluster's addresses and file locations are moved.
    const sidecarEnv = containerEnv(leash.env, { 'metadata.name': podName });
    const doc = readDocument(sidecarEnv.LEASH_CONFIG!, sidecarEnv) as Json;
    expect(doc.authority.bootstrap).toEqual({ kubernetes: { tokenFile: '/var/run/secrets/leash/token' } });
    expect(doc.instance.id).toBe(podName);
    doc.listen = '127.0.0.1:0';
    doc.admin = '127.0.0.1:0';
    doc.authority = { ...doc.authority, url: authority.url, caFile: join(dir, 'authority-ca.crt'), bootstrap: { kubernetes: { tokenFile: join(dir, 'pod-token') } } };
    for (const route of Object.values(doc.routes as Json)) route.upstream = upstream.url;
    const sidecarConfig = parseConfig(sidecarSchema, JSON.stringify(doc), {});
    const logs = new LogSink();
    const logger = createLogger({ level: 'debug', destination: logs });
    const built = assembleSidecar({
      config: sidecarConfig,
      env: {},
      caFiles: new Map(),
      logger,
      audit: createAudit(logger),
      authorityCa: authority.caPem,
      bootstrapToken: bootstrapTokenReader(sidecarConfig, {}),
    });
    sidecar = built.sidecar;
    const addrs = await sidecar.start();
    const readyz = await fetch(`http://127.0.0.1:${addrs.admin.port}/readyz`);
    expect(readyz.status, JSON.stringify(await readyz.json())).toBe(200);

    // The agent calls what the injector told it, on the sidecar's port.
    const agentEnv = containerEnv(patched.spec.containers[0].env, {});
    const base_url = new URL(agentEnv.OPENAI_BASE_URL!);
    expect(`${base_url.hostname}:${base_url.port}`).toBe(`127.0.0.1:${injector.config.ports.proxy}`);
    base_url.port = String(addrs.proxy.port);
    const res = await fetch(`${base_url.href}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${agentEnv.OPENAI_API_KEY}` }, body: '{}' });
    expect(res.status).toBe(200);
    expect(seen).toEqual({ authorization: `Bearer ${OPENAI_KEY}`, path: '/v1/chat/completions' });
    const identity = `spiffe://${base.trustDomain}/ns/agents/sa/doc-agent/pod/${podName}`;
    expect(await authority.running.store.listLeases({ instance: identity })).toHaveLength(1);
    for (const line of [...logs.lines, ...authority.logs.lines]) expect(line).not.toContain(podToken);
  });
});
