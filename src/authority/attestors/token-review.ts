/**
 * The decision on a Kubernetes TokenReview answer, pure (no I/O): is this a token the
 * API server authenticated, for our audience, bound to one pod, of a service account —
 * and which pod. The HTTP call is in kubernetes.ts.
 *
 * Shape (authentication.k8s.io/v1, answered 201 Created with the review echoed):
 *   status.authenticated: true
 *   status.audiences: the intersection of spec.audiences and the token's audiences
 *   status.user.username: system:serviceaccount:<namespace>:<name>
 *   status.user.extra["authentication.kubernetes.io/pod-name" | ".../pod-uid"]: [value]
 *     present only for a token bound to a pod (a projected volume or TokenRequest with a
 *     pod boundObjectRef); a legacy Secret-based or unbound token has neither.
 */
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

export type ReviewDecision =
  | { ok: true; namespace: string; serviceAccount: string; podName: string; podUid: string }
  | { ok: false; reason: string };

/** DNS-1123 names (namespaces, service accounts, pods): also valid SPIFFE path segments. */
const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const SA_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/**
 * The API server's own `status.error`, made safe to show: printable, bounded, and with
 * anything shaped like a JWT cut out (the reviewed token must never appear in a reason).
 */
export function safeReviewError(error: unknown): string | undefined {
  if (typeof error !== 'string' || !error) return undefined;
  const text = error
    .replace(/eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*/g, '<token>')
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim();
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

const single = (extra: Record<string, unknown>, key: string): string | undefined => {
  const v = extra[key];
  return Array.isArray(v) && v.length === 1 && typeof v[0] === 'string' && v[0] ? v[0] : undefined;
};

export function decideTokenReview(review: unknown, audience: string): ReviewDecision {
  const status = (review as { status?: unknown } | null)?.status;
  if (!status || typeof status !== 'object') return { ok: false, reason: 'the TokenReview answer has no status' };
  const s = status as { authenticated?: unknown; audiences?: unknown; error?: unknown; user?: unknown };
  if (s.authenticated !== true) {
    const why = safeReviewError(s.error);
    return { ok: false, reason: `the Kubernetes API server did not authenticate the token${why ? ` (${why})` : ''}` };
  }
  // An API server that ignores spec.audiences answers none: it would accept a token minted
  // for anything (its own audience included). The audience must be confirmed.
  if (!Array.isArray(s.audiences) || !s.audiences.includes(audience)) {
    return { ok: false, reason: `the token is not for audience ${JSON.stringify(audience)} (the API server did not confirm it)` };
  }
  const user = s.user && typeof s.user === 'object' ? (s.user as { username?: unknown; extra?: unknown }) : {};
  const m = typeof user.username === 'string' ? SA_USER.exec(user.username) : null;
  if (!m) return { ok: false, reason: 'the token is not a service-account token (user is not system:serviceaccount:<namespace>:<name>)' };
  const [, namespace, serviceAccount] = m as unknown as [string, string, string];
  const extra = user.extra && typeof user.extra === 'object' ? (user.extra as Record<string, unknown>) : {};
  const podName = single(extra, POD_NAME_EXTRA);
  const podUid = single(extra, POD_UID_EXTRA);
  if (!podName || !podUid) {
    return {
      ok: false,
      // The extras' full names are in docs/authority.md; the sidecar shows at most 160 characters.
      reason: `plain service-account token of ${namespace}/${serviceAccount} refused: not bound to a pod (no pod-name/pod-uid); use a projected token, audience ${JSON.stringify(audience)}`,
    };
  }
  for (const [what, v] of [['namespace', namespace], ['service account', serviceAccount], ['pod name', podName]] as const) {
    if (!NAME.test(v)) return { ok: false, reason: `the token's ${what} is not a Kubernetes name` };
  }
  return { ok: true, namespace, serviceAccount, podName, podUid };
}

/** The SPIFFE ID path a bound pod token proves. */
export const kubernetesPath = (d: { namespace: string; serviceAccount: string; podName: string }): string =>
  `/ns/${d.namespace}/sa/${d.serviceAccount}/pod/${d.podName}`;
