import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { kubernetesInputs } from '../../src/bin/authority.js';
import { KubernetesVerifier } from '../../src/authority/attestors/kubernetes.js';
import { bootstrapTokenReader } from '../../src/bin/load.js';
import { authoritySchema } from '../../src/config/authority.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { assembleSidecar } from '../../src/sidecar/assemble.js';
import type { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { KUBE_AUDIENCE, startKubeApi, type KubeApi } from '../helpers/kube-apiserver.js';
import { freePort } from '../helpers/ports.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * Kubernetes node attestation end to end: a real authority and a real sidecar, and a
 * stand-in for the API server's TokenReview endpoint (no kube-apiserver exists on this
 * machine; test/helpers/kube-apiserver.ts answers as it does). The sidecar reads its
 * projected token from a file, as in a pod; the authority reads its own token and the
 * API server's CA from files, through the entry point's resolution (kubernetesInputs).
 */
let api: KubeApi | undefined;
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: { sidecar: Sidecar; adminUrl: string; url: string; logs: LogSink } | undefined;
let dir: string;

afterEach(async () => {
  await sidecar?.sidecar.stop();
  await upstream?.close();
  await authority?.stop();
  await api?.close();
  sidecar = upstream = authority = api = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const POD = { namespace: 'agents', serviceAccount: 'doc-agent', pod: { name: 'doc-agent-7d9f-x2k4q', uid: '0f5e0c3a-1111-4a2b-9c3d-7e8f9a0b1c2d' }, audiences: ['leash'] };
const IDENTITY = 'spiffe://leash.local/ns/agents/sa/doc-agent/pod/doc-agent-7d9f-x2k4q';

async function start(kube: KubeApi, podToken: string | undefined, opts: { identityTtl?: string } = {}): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'leash-k8s-'));
  if (podToken) writeFileSync(join(dir, 'pod-token'), `${podToken}\n`);
  writeFileSync(join(dir, 'ca.crt'), kube.caPem);
  writeFileSync(join(dir, 'authority-token'), `${kube.reviewerToken}\n`);
  const config = {
    trustDomain: 'leash.local',
    kubernetes: { caFile: join(dir, 'ca.crt'), tokenFile: join(dir, 'authority-token') },
    identity: { ttl: opts.identityTtl ?? '1h' },
    credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
    policies: [{ identities: ['spiffe://leash.local/ns/agents/sa/doc-agent/pod/*'], credentials: ['search'] }],
  };
  // The API server address from the in-cluster variables, as in a pod.
  const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(kube.port) };
  const parsed = parseConfig(authoritySchema, JSON.stringify({ listen: '127.0.0.1:0', ...config }), env);
  authority = await startAuthority(config, { env, kubernetes: kubernetesInputs(parsed, env) });
  const jwks = createLocalJWKSet(authority.running.keys.jwks());
  upstream = await startUpstream(async (req, res) => {
    try {
      const { payload } = await jwtVerify(String(req.headers.authorization ?? '').replace(/^Bearer /, ''), jwks, { audience: 'search-api' });
      res.end(JSON.stringify({ sub: payload.sub }));
    } catch {
      res.writeHead(401).end();
    }
  });
  const sidecarConfig = parseConfig(
    sidecarSchema,
    JSON.stringify({
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      shutdown: { grace: '2s' },
      rotation: { backoff: { base: '50ms', cap: '400ms' } },
      authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { kubernetes: { tokenFile: join(dir, 'pod-token') } } },
      routes: { search: { upstream: upstream.url, credential: 'search', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    }),
    {},
  );
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
  expect(built.attestor?.kind).toBe('kubernetes');
  const addrs = await built.sidecar.start();
  sidecar = { sidecar: built.sidecar, logs, url: `http://127.0.0.1:${addrs.proxy.port}`, adminUrl: `http://127.0.0.1:${addrs.admin.port}` };
}

/** Replace the token file atomically, as the kubelet does (a symlink swap in its atomic writer). */
function writePodToken(token: string): void {
  writeFileSync(join(dir, 'pod-token.tmp'), token);
  renameSync(join(dir, 'pod-token.tmp'), join(dir, 'pod-token'));
}

async function readyz(): Promise<{ status: number; body: { errors: { identity?: string } } }> {
  const res = await fetch(`${sidecar!.adminUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as { errors: { identity?: string } } };
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 8_000): Promise<T> {
  const found = await waitFor(
    async () => {
      const v = await probe();
      return v !== undefined && v !== false ? { v } : undefined;
    },
    { timeoutMs: ms, intervalMs: 25, message: what },
  );
  return found.v;
}

const leaseWorks = async () => {
  const res = await fetch(`${sidecar!.url}/search/v1/query`);
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ sub: IDENTITY });
};

describe('Kubernetes node attestation (TokenReview)', () => {
  it('a bound pod token gives spiffe://…/ns/N/sa/S/pod/P, and leases work under it', async () => {
    api = await startKubeApi();
    const token = api.mint(POD);
    await start(api, token);
    expect((await readyz()).status).toBe(200);
    await leaseWorks();
    const leases = await authority!.running.store.listLeases({ instance: IDENTITY });
    expect(leases).toHaveLength(1);
    // The authority asked with its own token, for audience leash, about the pod's token.
    expect(api.reviews).toHaveLength(1);
    expect(api.reviews[0]).toMatchObject({ authorization: `Bearer ${api.reviewerToken}`, token, audiences: ['leash'] });
    // The request exactly as the API server takes it: JSON, a TokenReview of authentication.k8s.io/v1, nothing else in it.
    expect(api.reviews[0]!.contentType).toBe('application/json');
    expect(api.reviews[0]!.body).toEqual({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['leash'] } });
    const metrics = await authority!.running.metrics.registry.metrics();
    expect(metrics).toMatch(/leash_authority_bootstrap_total\{method="kubernetes",result="success"\} 1/);
    // Neither token appears in any log line of either side.
    for (const line of [...authority!.logs.lines, ...sidecar!.logs.lines]) {
      expect(line).not.toContain(api.reviewerToken);
      expect(line).not.toContain(token);
      expect(line).not.toContain(token.split('.')[2]!);
    }
  });

  it('a token the API server does not authenticate is refused; the sidecar stays unready and says why', async () => {
    api = await startKubeApi();
    const token = api.mint(POD);
    api.tokens.delete(token); // e.g. its pod was deleted
    await start(api, token);
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.errors.identity).toMatch(/401 \(LEASH_ERR_UNAUTHENTICATED\).*did not authenticate the token/);
    expect(r.body.errors.identity).toContain('invalid bearer token');
    expect(JSON.stringify(r.body)).not.toContain(token);
    expect(authority!.logs.lines.join('\n')).not.toContain(token);
  });

  it('a token for another audience is refused', async () => {
    api = await startKubeApi();
    await start(api, api.mint({ ...POD, audiences: ['vault'] }));
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.errors.identity).toMatch(/did not authenticate the token .*token audiences \["vault"\] is invalid for the target audiences \["leash"\]/);
  });

  it('a plain service-account token (not bound to a pod) is refused with the reason', async () => {
    api = await startKubeApi();
    await start(api, api.mint({ namespace: 'agents', serviceAccount: 'doc-agent', audiences: ['leash'] }));
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.errors.identity).toContain('plain service-account token of agents/doc-agent refused: not bound to a pod');
    expect(await authority!.running.store.listLeases({})).toEqual([]);
  });

  it('API server down: the sidecar stays unready, retries with backoff, and becomes ready when it comes up', async () => {
    api = await startKubeApi({ port: await freePort(), listen: false });
    await start(api, api.mint(POD));
    const r = await readyz();
    expect(r.status).toBe(503);
    expect(r.body.errors.identity).toMatch(/503 \(LEASH_ERR_ATTESTATION_UNAVAILABLE\)/);
    // Several attempts, spaced by the backoff (base 50ms, cap 400ms), not a tight loop.
    const downSince = Date.now();
    const attempts = () => sidecar!.logs.lines.filter((l) => l.includes('identity bootstrap/renewal failed')).length;
    await until('3 failed bootstraps', () => (attempts() >= 3 ? true : undefined));
    await sleep(300);
    // Spaced by the backoff (full jitter, base 50ms, cap 400ms): a handful, not a tight loop.
    expect(attempts()).toBeLessThanOrEqual(3 + (Date.now() - downSince) / 20);
    const failedAt = Date.now();
    await api.listen();
    await until('ready', async () => ((await readyz()).status === 200 ? true : undefined));
    expect(Date.now() - failedAt).toBeLessThan(5_000);
    await leaseWorks();
  });

  it('the token file is re-read: a rotated token is used for the next attestation, and identities refresh by re-attesting', async () => {
    api = await startKubeApi();
    const first = api.mint(POD);
    await start(api, first, { identityTtl: '2s' });
    await leaseWorks();
    // The kubelet rotates the projected token; the old one stops being valid.
    const second = api.mint(POD);
    writePodToken(second);
    api.tokens.delete(first);
    // The identity refreshes at about half its 2 s life, by attesting again with the file's token.
    await until('a review of the rotated token', () => (api!.reviews.some((r) => r.token === second) ? true : undefined));
    await until('renewed', () => (sidecar!.logs.lines.some((l) => l.includes('"event":"instance.renewed"')) ? true : undefined));
    expect(api.reviews.filter((r) => r.token === first).length).toBeGreaterThanOrEqual(1);
    expect((await readyz()).status).toBe(200);
    await leaseWorks();
  });

  it("a pod's identity is not renewed with its certificate: only by attesting again, so it ends with a deleted pod", async () => {
    api = await startKubeApi();
    const token = api.mint(POD);
    await start(api, token);
    const { createCsr, createIdentityKey } = await import('../../src/pki/x509.js');
    const { AuthorityClient } = await import('../../src/sidecar/credentials/authority-client.js');
    const client = new AuthorityClient(new URL(authority!.url), authority!.caPem);
    const key = createIdentityKey();
    const boot = await client.bootstrap({ kind: 'kubernetes', token }, createCsr(key, 'leash-sidecar'));
    expect(boot.identity).toBe(IDENTITY);
    client.setIdentity({ certificate: boot.certificate, privateKey: key.privateKeyPem });
    // The pod is deleted: its token stops passing the review.
    api.tokens.delete(token);
    const reviews = api.reviews.length;
    const renewed = await client.renewIdentity(createCsr(createIdentityKey(), 'leash-sidecar')).then(
      () => 'renewed',
      (err: Error) => err.message,
    );
    client.close();
    expect(renewed).toMatch(/401|attesting again/);
    expect(api.reviews.length).toBe(reviews);
    const metrics = await authority!.running.metrics.registry.metrics();
    expect(metrics).toMatch(/leash_authority_bootstrap_total\{method="renew",result="failure"\} 1/);
  });

  it("refuses to start with kubernetes.audience set to the API server's own audience: every pod's default token would attest as its pod", async () => {
    api = await startKubeApi();
    dir = mkdtempSync(join(tmpdir(), 'leash-k8s-'));
    writeFileSync(join(dir, 'ca.crt'), api.caPem);
    writeFileSync(join(dir, 'authority-token'), `${api.reviewerToken}\n`);
    const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port) };
    const parse = (audience?: string) =>
      parseConfig(
        authoritySchema,
        JSON.stringify({
          listen: '127.0.0.1:0',
          trustDomain: 'leash.local',
          kubernetes: { caFile: join(dir, 'ca.crt'), tokenFile: join(dir, 'authority-token'), ...(audience ? { audience } : {}) },
          credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
          policies: [{ identities: ['spiffe://leash.local/ns/agents/sa/doc-agent/pod/*'], credentials: ['search'] }],
        }),
        env,
      );
    // What it would let through: the agent container's automounted token (bound to the pod,
    // for the API server) passes a TokenReview that asks for that audience.
    const automounted = api.mint({ ...POD, audiences: [KUBE_AUDIENCE] });
    const inputs = kubernetesInputs(parse(), env)!;
    const asked = new KubernetesVerifier({ ...inputs, audience: KUBE_AUDIENCE });
    expect(await asked.verify(automounted)).toEqual({ path: '/ns/agents/sa/doc-agent/pod/doc-agent-7d9f-x2k4q' });
    expect(() => kubernetesInputs(parse(KUBE_AUDIENCE), env)).toThrow(/kubernetes\.audience: .*the API server's own/);
    // Its own audience (the default, or any other of leash's) starts.
    expect(kubernetesInputs(parse(), env)).toBeDefined();
    expect(kubernetesInputs(parse('leash-prod'), env)).toBeDefined();
  });

  it('the old bootstrap request shape { joinToken, csr } is still accepted', async () => {
    api = await startKubeApi();
    await start(api, api.mint(POD));
    const joinToken = await authority!.token('legacy-1');
    const { createCsr, createIdentityKey } = await import('../../src/pki/x509.js');
    const { AuthorityClient } = await import('../../src/sidecar/credentials/authority-client.js');
    const client = new AuthorityClient(new URL(authority!.url), authority!.caPem);
    // Sent by hand in the old shape (what sidecars before node attestors send).
    const res = await (client as unknown as { call(m: string, p: string, b: unknown): Promise<{ identity: string }> }).call('POST', '/v1/bootstrap', {
      joinToken,
      csr: createCsr(createIdentityKey(), 'leash-sidecar'),
    });
    client.close();
    expect(res.identity).toBe('spiffe://leash.local/join/legacy-1');
  });
});
