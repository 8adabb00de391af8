import { z } from 'zod';
import { DEFAULT_KEY_PREFIX, KEY_PREFIX_PATTERN, KEY_PREFIX_RULE } from '../core/protocol.js';
import { deepFreeze, duration, filePath, hostPort, logLevel, redisTarget, secretSource } from './common.js';
import { didYouMean } from './cross-check.js';
import { holdsSecret, INLINE_SECRET, looksLikeSecret } from './secret-shape.js';

/** The authority's configuration (DESIGN §4), validated once and frozen. */

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/;

const ttl = duration('a TTL').refine((ms) => ms >= 1_000, 'must be at least 1s');
/**
 * An issuer's call timeout. 0 would fail every lease at once; beyond 2^31-1 ms Node's
 * timers fire after 1 ms (TimeoutOverflowWarning), which fails every lease just the same.
 */
const issuerTimeout = duration('a timeout')
  .refine((ms) => ms >= 100, 'must be at least 100ms')
  .refine((ms) => ms <= 600_000, 'must be at most 10m')
  .default(10_000);

const EXEC_ARG_SECRET = "looks like a secret written inline: a command's arguments are visible to every local user (ps) while it runs; have the command read the secret from a file";

const credential = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({ kind: z.literal('static'), source: secretSource, ttl: ttl.default(900_000) }),
    z.strictObject({
      kind: z.literal('jwt'),
      audience: z.string().min(1),
      scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be a scope token (RFC 6749 §3.3)')).default([]),
      ttl: ttl.default(300_000),
    }),
    z.strictObject({
      kind: z.literal('oauth2'),
      tokenUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
      clientId: z.string().min(1),
      clientSecret: secretSource,
      scope: z.string().optional(),
      audience: z.string().optional(),
      clientAuth: z.enum(['basic', 'post']).default('basic'),
      caFile: filePath.optional(),
      timeout: issuerTimeout,
      ttl: ttl.default(3_600_000),
    }),
    z.strictObject({
      kind: z.literal('exec'),
      // Its arguments are every local user's to read (`ps`, /proc/<pid>/cmdline) while it
      // runs, once per lease, and it gets no variables but PATH and LEASH_*: a key passed as
      // `--key ${GH_APP_KEY}` is refused like an inline secret; the command reads a file.
      command: z
        .array(z.string().min(1).refine((arg) => !holdsSecret(arg), EXEC_ARG_SECRET))
        .min(1, 'must name the program and its arguments'),
      timeout: issuerTimeout,
      ttl: ttl.default(1_800_000),
    }),
  ],
  { error: 'must have kind static, jwt, oauth2 or exec' },
);
export type CredentialConfig = z.infer<typeof credential>;

/** A token bucket's settings: `perMinute` sustained (0: no limit), `burst` at once. */
const rateLimit = (perMinute: number, burst: number) =>
  z
    .strictObject({
      perMinute: z.int().min(0).default(perMinute),
      burst: z.int().min(1).max(10_000).default(burst),
    })
    .prefault({});

const policy = z.strictObject({
  identities: z.array(z.string().min(1)).min(1),
  credentials: z.array(z.string().min(1)).min(1),
  maxTtl: ttl.default(3_600_000),
});

export const authoritySchema = z
  .strictObject({
    listen: hostPort.default({ host: '0.0.0.0', port: 8443 }),
    trustDomain: z.string().regex(TRUST_DOMAIN, 'must be a lower-case DNS-like trust domain').default('leash.local'),
    /** Names and addresses the authority's TLS certificate is issued for (when it issues its own). */
    hostnames: z.array(z.string().min(1)).default(['localhost', '127.0.0.1']),
    // trustedCertFiles: other CA certificates whose identity certificates are accepted too,
    // so the CA can be replaced with an overlap (docs/operations.md, "Rotating leash's own keys").
    ca: z.strictObject({ certFile: filePath, keyFile: filePath, trustedCertFiles: z.array(filePath).max(8).default([]) }).optional(),
    tls: z.strictObject({ certFile: filePath, keyFile: filePath }).optional(),
    signing: z.strictObject({ keysDir: filePath, issuer: z.string().min(1).optional() }).optional(),
    admin: z.strictObject({ token: secretSource }).optional(),
    redis: redisTarget.optional(),
    keyPrefix: z.string().regex(KEY_PREFIX_PATTERN, KEY_PREFIX_RULE).default(DEFAULT_KEY_PREFIX),
    identity: z.strictObject({ ttl: ttl.default(3_600_000) }).prefault({}),
    // Retention of the shared audit stream <keyPrefix>audit, by length and by age (docs/audit.md).
    audit: z
      .strictObject({
        maxLen: z.int().min(1000).default(100_000),
        maxAge: duration().refine((ms) => ms >= 60_000, 'must be at least 1m').default(7 * 86_400_000),
        // How often the stream is read for one lease in use on two instances (docs/anomalies.md).
        anomalyScan: duration().refine((ms) => ms >= 1_000, 'must be at least 1s').default(30_000),
      })
      .prefault({}),
    joinTokens: z.strictObject({ maxTtl: ttl.default(3_600_000) }).prefault({}),
    // Lease requests per identity and bootstrap requests per client address, per replica
    // (docs/authority.md, "Rate limits"); perMinute 0: none.
    limits: z
      .strictObject({
        leases: rateLimit(60, 30),
        bootstraps: rateLimit(60, 30),
      })
      .prefault({}),
    // The HTTPS listener's connections (docs/authority.md, "Connections"): in all, from one
    // client address (0: no cap; SNAT puts many sidecars behind one), and how long a
    // connection may take to finish its TLS handshake.
    connections: z
      .strictObject({
        maxConnections: z.int().min(1).max(1_000_000).default(10_000),
        perAddress: z.int().min(0).max(1_000_000).default(1_000),
        handshakeTimeout: duration().refine((ms) => ms >= 100, 'must be at least 100ms').default(10_000),
      })
      .prefault({}),
    // Kubernetes node attestation (docs/authority.md): present = enabled. Each key left out
    // takes the in-cluster default, resolved by the entry point (src/bin/authority.ts):
    // https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT and the pod's own
    // service-account token and CA under /var/run/secrets/kubernetes.io/serviceaccount/.
    kubernetes: z
      .strictObject({
        apiServer: z
          .url({ protocol: /^https$/, error: 'must be an https URL' })
          .refine((u) => !new URL(u).username && !new URL(u).password, 'must not carry user:password')
          .optional(),
        caFile: filePath.optional(),
        tokenFile: filePath.optional(),
        audience: z.string().min(1).default('leash'),
        timeout: duration().default(5_000),
      })
      .optional(),
    log: z.strictObject({ level: logLevel.default('info') }).prefault({}),
    // As a sidecar's metrics options, and `listen`: /metrics on a plain-HTTP listener of its own, and no longer
    // on the API port (docs/authority.md, "Metrics listener").
    metrics: z.strictObject({ gcDuration: z.boolean().default(false), listen: hostPort.optional() }).prefault({}),
    credentials: z.record(
      z
        .string()
        .refine((n) => !looksLikeSecret(n), INLINE_SECRET)
        .regex(NAME, 'credential names must be lower-case letters, digits, ".", "-" or "_"'),
      credential,
    ),
    policies: z.array(policy).default([]),
  })
  .superRefine((c, ctx) => {
    for (const { path, message } of policyCredentialProblems(c.policies, Object.keys(c.credentials))) ctx.addIssue({ code: 'custom', path, message });
  })
  .transform((c) => deepFreeze(c));

/**
 * Policies naming a credential the file does not define. Takes the raw document's parts as
 * well as parsed ones: leash check runs it even when other keys have errors.
 */
export function policyCredentialProblems(policies: unknown, defined: readonly string[]): Array<{ path: Array<string | number>; message: string }> {
  const problems: Array<{ path: Array<string | number>; message: string }> = [];
  if (!Array.isArray(policies)) return problems;
  policies.forEach((p: unknown, i) => {
    const names = p !== null && typeof p === 'object' ? (p as { credentials?: unknown }).credentials : undefined;
    if (!Array.isArray(names)) return;
    names.forEach((name: unknown, j) => {
      if (typeof name !== 'string' || name === '*' || defined.includes(name)) return;
      // A secret pasted here is not repeated in the message; a typo gets a suggestion.
      const guess = didYouMean(name, defined);
      const message = looksLikeSecret(name)
        ? INLINE_SECRET
        : `names no credential defined under credentials (got ${JSON.stringify(name.slice(0, 64))})${guess ? `; did you mean "${guess}"?` : ''}`;
      problems.push({ path: ['policies', i, 'credentials', j], message });
    });
  });
  return problems;
}

export type AuthorityConfig = z.output<typeof authoritySchema>;
