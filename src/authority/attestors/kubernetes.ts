import type { AttestationVerifier } from '../../core/attestation.js';
import { holdsCertificate } from '../../core/ca-bundle.js';
import { HttpJsonError, httpJson, type HttpJsonResponse } from '../../core/http-json.js';
import { attestationRefused, attestationUnavailable } from './errors.js';
import { decideTokenReview, kubernetesPath } from './token-review.js';

/**
 * Kubernetes attestation (SPIRE's k8s_psat, one pod per identity): the sidecar's projected
 * service-account token is sent to the API server as a TokenReview, authenticated with the
 * authority's own service-account token; the answer is judged by decideTokenReview.
 *
 * Neither token is ever logged or put in an error: the request carries both, and the
 * answer echoes the reviewed one (spec.token), so neither body is shown anywhere.
 */
export interface KubernetesVerifierOptions {
  /** https://<host>:<port> of the API server. */
  apiServer: URL;
  /** PEM of the API server's CA; absent: the system's roots. */
  caPem?: string;
  /**
   * Reads the CA again (config `kubernetes.caFile`, the entry point's reader), before each
   * review: the kubelet updates the projected `ca.crt` in place when the cluster's CA is
   * rotated. Unreadable or without a certificate now: the last good one is used.
   */
  readCa?: () => string;
  /** The authority's own bearer token, read on each call (the kubelet rotates it). */
  token: () => string;
  audience: string;
  timeoutMs?: number;
}

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
const MAX_ANSWER = 1024 * 1024;

export class KubernetesVerifier implements AttestationVerifier {
  readonly kind = 'kubernetes' as const;
  private caPem: string | undefined;
  constructor(private readonly o: KubernetesVerifierOptions) {
    this.caPem = o.caPem;
  }

  /** The CA to verify the API server with now (readCa when given, else caPem). */
  private currentCa(): string | undefined {
    if (!this.o.readCa) return this.caPem;
    try {
      const pem = this.o.readCa();
      if (holdsCertificate(pem)) this.caPem = pem;
    } catch {
      // mid-swap or gone for a moment: the last good CA
    }
    return this.caPem;
  }

  async verify(token: string): Promise<{ path: string }> {
    // A JWT is three base64url parts; anything else is not worth a call to the API server.
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token) || token.length > 16_384) {
      throw attestationRefused('the Kubernetes token is not a JWT');
    }
    const review = await this.review(token);
    const d = decideTokenReview(review, this.o.audience);
    if (!d.ok) throw attestationRefused(d.reason);
    return { path: kubernetesPath(d) };
  }

  private async review(token: string): Promise<unknown> {
    let bearer: string;
    try {
      bearer = this.o.token();
    } catch (err) {
      throw attestationUnavailable('the authority cannot read its own Kubernetes token', err);
    }
    const url = new URL(TOKEN_REVIEW_PATH, this.o.apiServer);
    const review = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.o.audience] } };
    let res: HttpJsonResponse;
    try {
      res = await httpJson({
        method: 'POST',
        url,
        tls: { ca: this.currentCa() },
        timeoutMs: this.o.timeoutMs ?? 5_000,
        maxBodyBytes: MAX_ANSWER,
        headers: { authorization: `Bearer ${bearer}` },
        json: review,
      });
    } catch (err) {
      const failure = err instanceof HttpJsonError ? err.failure : undefined;
      if (failure === 'too_large') throw attestationUnavailable('the Kubernetes API server answered a TokenReview with more than 1 MiB');
      if (failure === 'cut_off') throw attestationUnavailable('the Kubernetes API server answer was cut off');
      throw attestationUnavailable(`the Kubernetes API server is unreachable (${(err as HttpJsonError).errno ?? 'error'})`);
    }
    const status = res.status;
    if (status === 401 || status === 403) {
      // Our own credentials or RBAC: the authority's problem, not the caller's.
      throw attestationUnavailable(`the Kubernetes API server refused the authority's TokenReview (${status}): check the authority's service-account token and its permission to create tokenreviews`);
    }
    if (status !== 200 && status !== 201) throw attestationUnavailable(`the Kubernetes API server answered ${status} to a TokenReview`);
    try {
      return res.json();
    } catch {
      throw attestationUnavailable('the Kubernetes API server answered a TokenReview with something other than JSON');
    }
  }
}
