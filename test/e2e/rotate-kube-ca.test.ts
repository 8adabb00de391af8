import { writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { startKubeApi, KUBE_AUDIENCE, type KubeApi } from '../helpers/kube-apiserver.js';
import { AuthorityProc } from '../helpers/rotate-fleet.js';
import { writeTemp } from '../helpers/spawn.js';
import { request } from 'node:https';

/**
 * The cluster's CA rotated under a running authority (Kubernetes attestation): the API
 * server now serves a certificate from a new CA, and the kubelet has updated the projected
 * `ca.crt` the authority's `kubernetes.caFile` names. Before: the file was read at start
 * only, so every TokenReview failed TLS verification (`503
 * LEASH_ERR_ATTESTATION_UNAVAILABLE`): no pod could bootstrap or re-attest, and each
 * Kubernetes sidecar failed closed at its identity's end. Now it is read before each review.
 */
let kube: KubeApi | undefined;
let authority: AuthorityProc | undefined;

afterAll(async () => {
  for (const p of authority?.all ?? []) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all((authority?.all ?? []).map((p) => p.exit));
  await kube?.close();
});

describe("rotating the Kubernetes API server's CA", () => {
  it('pods still attest after the cluster CA changes under a running authority', { timeout: 30_000 }, async () => {
    kube = await startKubeApi();
    const caFile = writeTemp('ca.crt', kube.caPem); // the projected kube-root-ca.crt
    const tokenFile = writeTemp('authority-token', kube.reviewerToken);
    const ca = CertificateAuthority.generate('leash.local');
    authority = new AuthorityProc({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(kube.port) });
    await authority.start({
      hostnames: ['127.0.0.1'],
      ca: { certFile: writeTemp('leash-ca.pem', ca.caPem), keyFile: writeTemp('leash-ca-key.pem', ca.exportPrivateKeyPem()) },
      kubernetes: { caFile, tokenFile },
      credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
      policies: [{ identities: ['spiffe://leash.local/ns/agents/sa/doc-agent/pod/*'], credentials: ['search'] }],
    });
    expect(KUBE_AUDIENCE).not.toBe('leash');
    const bootstrap = (pod: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const token = kube!.mint({ namespace: 'agents', serviceAccount: 'doc-agent', pod: { name: pod, uid: `uid-${pod}` }, audiences: ['leash'] });
        const body = JSON.stringify({ attestation: { kind: 'kubernetes', token }, csr: createCsr(createIdentityKey(), 'x') });
        const req = request(`${authority!.url}/v1/bootstrap`, { method: 'POST', ca: ca.caPem, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        });
        req.on('error', reject);
        req.end(body);
      });

    expect((await bootstrap('agent-1')).status).toBe(200);
    kube.rotateCa();
    writeFileSync(caFile, kube.caPem); // the kubelet's update of the projected ca.crt
    const after = await bootstrap('agent-2');
    expect(after.body).not.toMatch(/ATTESTATION_UNAVAILABLE/);
    expect(after.status).toBe(200);
    expect(JSON.parse(after.body).identity).toBe('spiffe://leash.local/ns/agents/sa/doc-agent/pod/agent-2');
  });
});
