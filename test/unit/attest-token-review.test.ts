import { describe, expect, it } from 'vitest';
import { KubernetesVerifier } from '../../src/authority/attestors/kubernetes.js';
import { decideTokenReview, kubernetesPath, safeReviewError } from '../../src/authority/attestors/token-review.js';
import { AuthorityError } from '../../src/authority/errors.js';
import { compilePolicy, decide } from '../../src/authority/policy/policy.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { parseConfig } from '../../src/config/load.js';
import { startKubeApi } from '../helpers/kube-apiserver.js';

/** The pure TokenReview decision, and the verifier against the stand-in API server. */
const bound = (over: Record<string, unknown> = {}) => ({
  kind: 'TokenReview',
  apiVersion: 'authentication.k8s.io/v1',
  metadata: { creationTimestamp: null },
  spec: { token: 'eyJhbGciOiJSUzI1NiJ9.e30.c2ln', audiences: ['leash'] },
  status: {
    authenticated: true,
    user: {
      username: 'system:serviceaccount:agents:doc-agent',
      uid: 'u-1',
      groups: ['system:serviceaccounts'],
      extra: { 'authentication.kubernetes.io/pod-name': ['doc-agent-0'], 'authentication.kubernetes.io/pod-uid': ['p-uid-1'] },
    },
    audiences: ['leash'],
    ...over,
  },
});

describe('decideTokenReview', () => {
  it('accepts a bound pod token for the audience and names the pod', () => {
    const d = decideTokenReview(bound(), 'leash');
    expect(d).toEqual({ ok: true, namespace: 'agents', serviceAccount: 'doc-agent', podName: 'doc-agent-0', podUid: 'p-uid-1' });
    expect(d.ok && kubernetesPath(d)).toBe('/ns/agents/sa/doc-agent/pod/doc-agent-0');
  });

  it('refuses what the API server did not authenticate, with its (made safe) error', () => {
    const d = decideTokenReview({ status: { user: {}, error: '[invalid bearer token, eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln is bad]' } }, 'leash');
    expect(d).toEqual({ ok: false, reason: 'the Kubernetes API server did not authenticate the token ([invalid bearer token, <token> is bad])' });
    expect(decideTokenReview({ status: { authenticated: 'true' } }, 'leash').ok).toBe(false);
    expect(decideTokenReview({}, 'leash')).toEqual({ ok: false, reason: 'the TokenReview answer has no status' });
    expect(decideTokenReview(null, 'leash').ok).toBe(false);
  });

  it('requires the audience confirmed in status.audiences (an audience-unaware answer is refused)', () => {
    expect(decideTokenReview(bound({ audiences: ['vault'] }), 'leash')).toMatchObject({ ok: false, reason: expect.stringContaining('not for audience "leash"') });
    expect(decideTokenReview(bound({ audiences: [] }), 'leash').ok).toBe(false);
    expect(decideTokenReview(bound({ audiences: undefined }), 'leash').ok).toBe(false);
  });

  it('refuses a plain service-account token (no pod extras), and half a binding', () => {
    const plain = bound();
    plain.status.user.extra = {} as never;
    expect(decideTokenReview(plain, 'leash')).toEqual({
      ok: false,
      reason: 'plain service-account token of agents/doc-agent refused: not bound to a pod (no pod-name/pod-uid); use a projected token, audience "leash"',
    });
    const half = bound();
    half.status.user.extra = { 'authentication.kubernetes.io/pod-name': ['doc-agent-0'] } as never;
    expect(decideTokenReview(half, 'leash').ok).toBe(false);
    const two = bound();
    two.status.user.extra['authentication.kubernetes.io/pod-name'] = ['a', 'b'];
    expect(decideTokenReview(two, 'leash').ok).toBe(false);
  });

  it('refuses users that are not service accounts, and names that are not Kubernetes names', () => {
    const user = bound();
    user.status.user.username = 'alice@example.com';
    expect(decideTokenReview(user, 'leash')).toMatchObject({ ok: false, reason: expect.stringContaining('not a service-account token') });
    const odd = bound();
    odd.status.user.extra['authentication.kubernetes.io/pod-name'] = ['../admin'];
    expect(decideTokenReview(odd, 'leash')).toMatchObject({ ok: false, reason: "the token's pod name is not a Kubernetes name" });
    const upper = bound();
    upper.status.user.username = 'system:serviceaccount:Agents:doc-agent';
    expect(decideTokenReview(upper, 'leash').ok).toBe(false);
  });

  it('safeReviewError bounds and cleans the API server text', () => {
    expect(safeReviewError(undefined)).toBeUndefined();
    expect(safeReviewError('x'.repeat(500))!.length).toBe(200);
    expect(safeReviewError('a\u0000b\u202ec')).toBe('a b c');
  });
});

describe('policies match Kubernetes identities', () => {
  it('spiffe://leash.local/ns/*/sa/*/pod/* matches one pod identity per segment', () => {
    const policy = compilePolicy([{ identities: ['spiffe://leash.local/ns/agents/sa/*/pod/*'], credentials: ['search'], maxTtlMs: 60_000 }], 'leash.local');
    expect(decide(policy, 'spiffe://leash.local/ns/agents/sa/doc-agent/pod/doc-agent-0', 'search').allowed).toBe(true);
    expect(decide(policy, 'spiffe://leash.local/ns/other/sa/doc-agent/pod/doc-agent-0', 'search').allowed).toBe(false);
    expect(decide(policy, 'spiffe://leash.local/ns/agents/sa/doc-agent/pod/x/y', 'search').allowed).toBe(false);
  });
});

describe('sidecar config authority.bootstrap', () => {
  const parse = (bootstrap: unknown) =>
    parseConfig(sidecarSchema, JSON.stringify({ authority: { url: 'https://a.example', caFile: 'ca.pem', bootstrap }, routes: { r: { upstream: 'https://u.example', credential: 'c', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } } }), {});
  it('kubernetes defaults to the injector mount; exactly one attestor', () => {
    expect(parse({ kubernetes: {} }).authority!.bootstrap.kubernetes).toEqual({ tokenFile: '/var/run/secrets/leash/token' });
    expect(parse({ joinToken: { env: 'JT' } }).authority!.bootstrap.joinToken).toEqual({ env: 'JT' });
    expect(() => parse({})).toThrow(/exactly one of joinToken or kubernetes/);
    expect(() => parse({ joinToken: { env: 'JT' }, kubernetes: {} })).toThrow(/exactly one of joinToken or kubernetes/);
  });
});

describe('KubernetesVerifier', () => {
  it('an API server refusing the authority (wrong token or RBAC) is a 503 naming the cause, never the tokens', async () => {
    const api = await startKubeApi();
    try {
      const pod = api.mint({ namespace: 'a', serviceAccount: 'b', pod: { name: 'c', uid: 'd' }, audiences: ['leash'] });
      const v = new KubernetesVerifier({ apiServer: new URL(api.url), caPem: api.caPem, token: () => 'wrong-reviewer-token', audience: 'leash' });
      const err = (await v.verify(pod).catch((e: unknown) => e)) as AuthorityError;
      expect(err).toBeInstanceOf(AuthorityError);
      expect(err.status).toBe(503);
      expect(err.code).toBe('LEASH_ERR_ATTESTATION_UNAVAILABLE');
      expect(err.message).toContain('refused the authority');
      expect(err.message).not.toContain(pod);
      const ok = new KubernetesVerifier({ apiServer: new URL(api.url), caPem: api.caPem, token: () => api.reviewerToken, audience: 'leash' });
      expect(await ok.verify(pod)).toEqual({ path: '/ns/a/sa/b/pod/c' });
      // Not a JWT: refused without asking the API server.
      const before = api.reviews.length;
      await expect(ok.verify('not a token')).rejects.toMatchObject({ status: 401 });
      expect(api.reviews.length).toBe(before);
      // Without the API server's CA, TLS fails closed.
      const noCa = new KubernetesVerifier({ apiServer: new URL(api.url), token: () => api.reviewerToken, audience: 'leash' });
      await expect(noCa.verify(pod)).rejects.toMatchObject({ status: 503 });
    } finally {
      await api.close();
    }
  });
});
