import { request } from 'node:https';
import type { AttestationVerifier } from '../../core/attestation.js';
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
  /** The authority's own bearer token, read on each call (the kubelet rotates it). */
  token: () => string;
  audience: string;
  timeoutMs?: number;
}

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
const MAX_ANSWER = 1024 * 1024;

export class KubernetesVerifier implements AttestationVerifier {
  readonly kind = 'kubernetes' as const;
  constructor(private readonly o: KubernetesVerifierOptions) {}

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

  private review(token: string): Promise<unknown> {
    let bearer: string;
    try {
      bearer = this.o.token();
    } catch (err) {
      return Promise.reject(attestationUnavailable('the authority cannot read its own Kubernetes token', err));
    }
    const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.o.audience] } });
    const url = new URL(TOKEN_REVIEW_PATH, this.o.apiServer);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          ca: this.o.caPem,
          rejectUnauthorized: true,
          timeout: this.o.timeoutMs ?? 5_000,
          headers: { authorization: `Bearer ${bearer}`, accept: 'application/json', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_ANSWER) {
              req.destroy();
              reject(attestationUnavailable('the Kubernetes API server answered a TokenReview with more than 1 MiB'));
            } else chunks.push(c);
          });
          res.on('error', () => reject(attestationUnavailable('the Kubernetes API server answer was cut off')));
          res.on('end', () => {
            if (status === 401 || status === 403) {
              // Our own credentials or RBAC: the authority's problem, not the caller's.
              return reject(attestationUnavailable(`the Kubernetes API server refused the authority's TokenReview (${status}): check the authority's service-account token and its permission to create tokenreviews`));
            }
            if (status !== 200 && status !== 201) return reject(attestationUnavailable(`the Kubernetes API server answered ${status} to a TokenReview`));
            try {
              resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
            } catch {
              reject(attestationUnavailable('the Kubernetes API server answered a TokenReview with something other than JSON'));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        reject(attestationUnavailable(`the Kubernetes API server is unreachable (${code})`));
      });
      req.end(body);
    });
  }
}
