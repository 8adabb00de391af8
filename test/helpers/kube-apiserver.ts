import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { issueServerCert, makeCa } from './proxy-tls.js';

/**
 * A stand-in for kube-apiserver's TokenReview endpoint (there is no kube-apiserver on
 * these machines), answering as the real one does:
 * - POST /apis/authentication.k8s.io/v1/tokenreviews with the reviewer's bearer token,
 *   else 401 with a v1 Status (`Unauthorized`);
 * - a body the API server would not take is refused as it refuses it: a content-type other
 *   than JSON → 415 (`UnsupportedMediaType`); an apiVersion other than the endpoint's, a
 *   kind other than TokenReview (either may be left out: the endpoint supplies them), or
 *   no spec.token → 400 (`BadRequest`);
 * - 201 Created with the TokenReview echoed (spec included, token and all) and `status`
 *   filled in: for a known token whose audiences meet spec.audiences, `authenticated:
 *   true`, `user` (username system:serviceaccount:<ns>:<sa>, uid, groups, and for a token
 *   bound to a pod the `authentication.kubernetes.io/*` extras) and `audiences` (the
 *   intersection); otherwise `{ user: {}, error: "[invalid bearer token, …]" }` with no
 *   `authenticated` (omitempty), as the API server's union authenticator reports it.
 */
export interface PodToken {
  namespace: string;
  serviceAccount: string;
  /** Absent: a plain (legacy Secret or unbound TokenRequest) service-account token. */
  pod?: { name: string; uid: string };
  audiences: string[];
}

export interface KubeApi {
  url: string;
  port: number;
  caPem: string;
  /** The bearer token the authority must present. */
  reviewerToken: string;
  /** Tokens the API server knows; delete one to make it invalid (a rotated-out or deleted pod's). */
  tokens: Map<string, PodToken>;
  /** Every review received: the Authorization header, the reviewed token, and the request as sent (content-type, body). */
  reviews: Array<{ authorization: string | undefined; token: string | undefined; audiences: unknown; contentType: string | undefined; body: unknown }>;
  /** Mint a JWT-shaped token for these claims and register it. */
  mint(claims: PodToken): string;
  listen(): Promise<void>;
  close(): Promise<void>;
  /** The cluster's CA rotated: a new CA (caPem changes) and a serving certificate from it, served from now on. */
  rotateCa(): void;
}

/** The API server's own audience (its service-account issuer, as kubeadm sets it): every pod's default token is for it. */
export const KUBE_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** Made without listening when `port` is given (start it later with listen(): "the API server comes up"). */
export async function startKubeApi(options: { port?: number; listen?: boolean } = {}): Promise<KubeApi> {
  let ca = makeCa('kubernetes test CA');
  let cert = issueServerCert(ca);
  // As the kubelet projects it: for the API server's audience.
  const reviewerToken = `${b64({ alg: 'RS256' })}.${b64({ aud: [KUBE_AUDIENCE], sub: 'system:serviceaccount:leash:authority', r: randomBytes(8).toString('hex') })}.${randomBytes(32).toString('base64url')}`;
  const tokens = new Map<string, PodToken>();
  const reviews: KubeApi['reviews'] = [];
  let server: Server | undefined;
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'POST' || req.url !== '/apis/authentication.k8s.io/v1/tokenreviews') {
        return send(404, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server could not find the requested resource', reason: 'NotFound', details: {}, code: 404 });
      }
      const failure = (code: number, reason: string, message: string) => send(code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
      const contentType = req.headers['content-type'];
      if ((contentType ?? '').split(';')[0]!.trim() !== 'application/json') {
        return failure(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf`);
      }
      let review: { apiVersion?: string; kind?: string; spec?: { token?: string; audiences?: string[] } };
      try {
        review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return failure(400, 'BadRequest', 'the object provided is unrecognized');
      }
      if (review.apiVersion !== undefined && review.apiVersion !== 'authentication.k8s.io/v1') {
        return failure(400, 'BadRequest', `the API version in the data (${String(review.apiVersion)}) does not match the expected API version (authentication.k8s.io/v1)`);
      }
      if (review.kind !== undefined && review.kind !== 'TokenReview') {
        return failure(400, 'BadRequest', `no kind "${String(review.kind)}" is registered for version "authentication.k8s.io/v1"`);
      }
      reviews.push({ authorization: req.headers.authorization, token: review.spec?.token, audiences: review.spec?.audiences, contentType, body: review });
      if (req.headers.authorization !== `Bearer ${reviewerToken}`) {
        return send(401, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'Unauthorized', reason: 'Unauthorized', code: 401 });
      }
      const spec = review.spec ?? {};
      if (!spec.token) return failure(400, 'BadRequest', 'token is required for TokenReview in authentication');
      const wanted = spec.audiences?.length ? spec.audiences : [KUBE_AUDIENCE];
      const known = spec.token ? tokens.get(spec.token) : undefined;
      let status: unknown;
      if (!known) {
        status = { user: {}, error: '[invalid bearer token, square/go-jose: error in cryptographic primitive]' };
      } else {
        const audiences = known.audiences.filter((a) => wanted.includes(a));
        if (audiences.length === 0) {
          status = { user: {}, error: `[invalid bearer token, token audiences ${JSON.stringify(known.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]` };
        } else {
          const extra: Record<string, string[]> = { 'authentication.kubernetes.io/credential-id': [`JTI=${randomUUID()}`] };
          if (known.pod) {
            extra['authentication.kubernetes.io/node-name'] = ['worker-1'];
            extra['authentication.kubernetes.io/node-uid'] = [randomUUID()];
            extra['authentication.kubernetes.io/pod-name'] = [known.pod.name];
            extra['authentication.kubernetes.io/pod-uid'] = [known.pod.uid];
          }
          status = {
            authenticated: true,
            user: {
              username: `system:serviceaccount:${known.namespace}:${known.serviceAccount}`,
              uid: randomUUID(),
              groups: ['system:serviceaccounts', `system:serviceaccounts:${known.namespace}`, 'system:authenticated'],
              extra,
            },
            audiences,
          };
        }
      }
      send(201, { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status });
    });
  };
  let port = options.port ?? 0;
  const api: KubeApi = {
    url: '',
    port,
    caPem: ca.certPem,
    reviewerToken,
    tokens,
    reviews,
    mint(claims) {
      const token = `${b64({ alg: 'RS256', kid: 'k1' })}.${b64({ aud: claims.audiences, sub: `system:serviceaccount:${claims.namespace}:${claims.serviceAccount}`, jti: randomUUID() })}.${randomBytes(64).toString('base64url')}`;
      tokens.set(token, claims);
      return token;
    },
    async listen() {
      server = createServer({ cert: cert.certPem, key: cert.keyPem }, handler);
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(port, '127.0.0.1', () => resolve());
      });
      port = (server.address() as AddressInfo).port;
      api.port = port;
      api.url = `https://127.0.0.1:${port}`;
    },
    rotateCa() {
      ca = makeCa('kubernetes test CA (rotated)');
      cert = issueServerCert(ca);
      api.caPem = ca.certPem;
      server?.setSecureContext({ cert: cert.certPem, key: cert.keyPem });
    },
    async close() {
      if (!server) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
    },
  };
  api.url = `https://127.0.0.1:${port}`;
  if (options.listen !== false) await api.listen();
  return api;
}

