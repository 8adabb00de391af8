import { z } from 'zod';
import { DEFAULT_KEY_PREFIX, KEY_PREFIX_PATTERN, KEY_PREFIX_RULE } from '../core/protocol.js';
import { deepFreeze, duration, filePath, hostPort, logLevel, metricsOptions, redisTarget, secretSource } from './common.js';
import { parseRule, type AllowRule } from './rules.js';
import { hasSecretSegment, holdsSecret, INLINE_SECRET, looksLikeSecret } from './secret-shape.js';

/** The sidecar's configuration (DESIGN §4), validated once and frozen. */

const ROUTE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const LEASE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Header names that may never be chosen for injection: they frame or route the request. */
const RESERVED_INJECT = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'upgrade', 'te', 'trailer', 'keep-alive', 'expect']);

const upstreamUrl = z.string({ error: 'must be an http(s) URL' }).transform((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !/^https?:\/\//i.test(text)) {
    ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL' });
    return z.NEVER;
  }
  if (url.username || url.password) {
    ctx.addIssue({ code: 'custom', message: 'must not carry user:password; use inject.basic with a credential source' });
    return z.NEVER;
  }
  if (url.search || url.hash) {
    ctx.addIssue({ code: 'custom', message: 'must not have a query or fragment' });
    return z.NEVER;
  }
  // `https://api.example/bot${TOKEN}`: the key would be shown on /status and by leash check.
  if (hasSecretSegment(url.pathname)) {
    ctx.addIssue({ code: 'custom', message: `its path ${INLINE_SECRET}` });
    return z.NEVER;
  }
  return url;
});

const headerName = z
  .string()
  .regex(HEADER_NAME, 'must be an HTTP header name')
  .transform((h) => h.toLowerCase());

const inject = z.union(
  [
    z.strictObject({
      header: headerName.refine((h) => !RESERVED_INJECT.has(h), 'is reserved for framing the request and cannot carry a credential'),
      format: z
        .string()
        .refine((f) => f.split('{{credential}}').length === 2, 'must contain "{{credential}}" exactly once')
        .refine((f) => !/[\r\n\0]/.test(f), 'must not contain CR, LF or NUL')
        // Printed by leash check and /status: `Token ${KEY} {{credential}}` would print the key.
        .refine((f) => !holdsSecret(f.replace('{{credential}}', ' ')), INLINE_SECRET)
        .default('{{credential}}'),
    }),
    z.strictObject({ query: z.string().regex(/^[A-Za-z0-9_.~-]+$/, 'must be a query parameter name') }),
    z.strictObject({
      basic: z.strictObject({
        username: z
          .string()
          .refine((u) => !/[:\r\n\0]/.test(u), 'must not contain ":", CR, LF or NUL')
          // Printed by leash check; APIs that take the key as the username (Stripe) tempt `username: "${KEY}"`.
          .refine((u) => !holdsSecret(u), INLINE_SECRET),
      }),
    }),
  ],
  { error: 'must be { header, format } or { query } or { basic: { username } }' },
);
export type InjectConfig = z.infer<typeof inject>;

const allowRule = z.string({ error: 'must be a string "METHOD /path"' }).transform((text, ctx): AllowRule => {
  const rule = parseRule(text);
  if (typeof rule === 'string') {
    ctx.addIssue({ code: 'custom', message: rule });
    return z.NEVER;
  }
  // `GET /v1/${KEY}/**`: the rule's text is printed by leash check and leash scopes.
  if (hasSecretSegment(rule.segments.join('/'))) {
    ctx.addIssue({ code: 'custom', message: `its path ${INLINE_SECRET}` });
    return z.NEVER;
  }
  return rule;
});

/**
 * A lease name. A value shaped like a key is refused before anything else looks at it:
 * `credential: "${VENDOR_KEY}"` would otherwise be sent to the authority and shown as the
 * lease's name everywhere. The message names the key path only (issues.ts never echoes it).
 */
const leaseName = z.string().superRefine((name, ctx) => {
  if (looksLikeSecret(name)) ctx.addIssue({ code: 'custom', message: INLINE_SECRET });
  else if (!LEASE_NAME.test(name)) ctx.addIssue({ code: 'custom', message: 'a lease name must be lower-case letters, digits, ".", "-" or "_"' });
});

const route = z.strictObject({
  upstream: upstreamUrl,
  credential: z.union([leaseName, secretSource], {
    error: 'must be a lease name, { file: PATH } or { env: NAME }',
  }),
  inject,
  allow: z.array(allowRule, { error: 'must be a list of "METHOD /path" rules (an empty list denies everything)' }),
  stripHeaders: z.array(headerName).default([]),
  caFile: filePath.optional(),
  timeouts: z
    .strictObject({
      connect: duration().default(10_000),
      // Past the vendor SDKs' own 10-minute request timeout: a slow non-streaming answer is the client's to give up on.
      idle: duration().default(600_000),
    })
    .prefault({}),
  maxSockets: z.int().positive().default(256),
  websocket: z.boolean().default(true),
  // false: the route answers 503 while it has no credential but does not hold /readyz (readiness.ts).
  required: z.boolean({ error: 'must be true or false' }).default(true),
});
export type RouteConfig = z.infer<typeof route>;
/** One route's schema, for the injector's route catalog (config/injector.ts): the same keys as here. */
export const sidecarRouteSchema = route;

/** One listener's connection limits (listener-limits.ts); the idle timeout is at least 50ms. */
const listenerLimits = (maxConnections: number, idleTimeout: number) =>
  z
    .strictObject({
      maxConnections: z.int().positive().default(maxConnections),
      idleTimeout: duration()
        .refine((ms) => ms >= 50, 'must be at least 50ms')
        .default(idleTimeout),
    })
    .prefault({});

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
function isOrigin(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === text.toLowerCase().replace(/\/$/, '');
  } catch {
    return false;
  }
}

export const sidecarSchema = z
  .strictObject({
    // In every log line, audit event and /status.
    instance: z.strictObject({ id: z.string().refine((id) => !holdsSecret(id), INLINE_SECRET).default('') }).prefault({}),
    listen: hostPort.default({ host: '127.0.0.1', port: 8080 }),
    admin: hostPort.default({ host: '127.0.0.1', port: 9090 }),
    connections: z.strictObject({ proxy: listenerLimits(512, 30_000), admin: listenerLimits(64, 10_000) }).prefault({}),
    // Who may call the listeners beyond the agent's own clients (proxy/browser-guard.ts).
    clients: z
      .strictObject({
        hosts: z.array(z.string().regex(HOST_NAME, 'must be a host name without a port, e.g. "leash.agents.svc"').transform((h) => h.toLowerCase())).default([]),
        origins: z
          .array(
            z.string().refine(isOrigin, 'must be a web origin "scheme://host[:port]" (no path), e.g. "https://console.example.com"').transform((o) => new URL(o).origin),
          )
          .default([]),
      })
      .prefault({}),
    shutdown: z.strictObject({ grace: duration().default(30_000) }).prefault({}),
    log: z.strictObject({ level: logLevel.default('info') }).prefault({}),
    metrics: metricsOptions,
    credentialFiles: z.strictObject({ pollInterval: duration().default(2_000) }).prefault({}),
    authority: z
      .strictObject({
        // Printed by leash check and used as the base of every call: no user:password, query or fragment.
        url: z
          .url({ protocol: /^https$/, error: 'must be an https URL' })
          .transform((u) => new URL(u))
          .refine((u) => !u.username && !u.password, 'must not carry user:password')
          .refine((u) => !u.search && !u.hash, 'must not have a query or fragment'),
        caFile: filePath,
        // How the identity is bootstrapped (node attestation, docs/configuration.md): a
        // one-time join token, or the pod's projected Kubernetes service-account token.
        bootstrap: z
          .strictObject({
            joinToken: secretSource.optional(),
            kubernetes: z.strictObject({ tokenFile: filePath.default('/var/run/secrets/leash/token') }).optional(),
          })
          .refine((b) => (b.joinToken === undefined) !== (b.kubernetes === undefined), 'must have exactly one of joinToken or kubernetes'),
        timeout: duration().default(5_000),
      })
      .optional(),
    revocations: z
      .strictObject({
        redis: redisTarget,
        prefix: z.string().regex(KEY_PREFIX_PATTERN, KEY_PREFIX_RULE).default(DEFAULT_KEY_PREFIX),
        // Fail closed on leased routes once the channel has been down this long (absent: serve until the leases expire).
        failClosedAfter: duration().optional(),
        // This instance's budget in the shared audit stream <prefix>audit (the log keeps everything).
        auditStream: z
          .strictObject({
            burst: z.int().positive().default(100),
            perMinute: z.number().positive().default(30),
          })
          .prefault({}),
      })
      .optional(),
    // The audit stream (docs/audit.md): where it is (default: revocations.redis and .prefix),
    // how often per-request use is summarised into it, this instance's budgets, retention.
    audit: z
      .strictObject({
        redis: redisTarget.optional(),
        prefix: z.string().regex(KEY_PREFIX_PATTERN, KEY_PREFIX_RULE).optional(),
        flushInterval: duration().refine((ms) => ms >= 100, 'must be at least 100ms').default(5_000),
        maxKeys: z.int().positive().max(100_000).default(1_000),
        // Lifecycle events (was revocations.auditStream, which still works when this is absent).
        stream: z.strictObject({ burst: z.int().positive().default(100), perMinute: z.number().positive().default(30) }).optional(),
        // Usage summaries, counted in entries.
        usageBudget: z.strictObject({ burst: z.int().positive().default(1_000), perMinute: z.number().positive().default(600) }).prefault({}),
        maxLen: z.int().min(1000).default(100_000),
        maxAge: duration().refine((ms) => ms >= 60_000, 'must be at least 1m').default(7 * 86_400_000),
      })
      .prefault({}),
    rotation: z
      .strictObject({
        at: z.number().gt(0.1).lt(0.9).default(0.5),
        jitter: z.number().min(0).lt(0.3).default(0.1),
        // Retries of a failed refresh: full jitter in [0, min(cap, base·2^n)) (DESIGN §6).
        backoff: z
          .strictObject({
            base: duration().refine((ms) => ms >= 10, 'must be at least 10ms').default(500),
            cap: duration().refine((ms) => ms >= 10, 'must be at least 10ms').default(30_000),
          })
          .refine((b) => b.cap >= b.base, { message: 'cap must not be below base', path: ['cap'] })
          .prefault({}),
        // Refreshes after upstream 401/403: at most one per route per window, the window
        // doubling (up to cap) while each refreshed credential is refused again (DESIGN §6).
        authFailure: z
          .strictObject({
            window: duration().refine((ms) => ms >= 100, 'must be at least 100ms').default(30_000),
            cap: duration().refine((ms) => ms >= 100, 'must be at least 100ms').default(600_000),
          })
          .refine((b) => b.cap >= b.window, { message: 'cap must not be below window', path: ['cap'] })
          .prefault({}),
      })
      .prefault({}),
    // Anomaly detection (docs/anomalies.md): learning window, client window, 401/403 bursts.
    anomalies: z
      .strictObject({
        learningWindow: duration().default(600_000),
        clientWindow: duration().default(3_600_000),
        authFailureBurst: z.strictObject({ count: z.int().min(2).default(5), window: duration().default(60_000) }).prefault({}),
      })
      .prefault({}),
    routes: z
      .record(z.string().regex(ROUTE_NAME, 'route names must be lower-case letters, digits, "-" or "_" (at most 63)'), route)
      .refine((routes) => Object.keys(routes).length > 0, 'must define at least one route'),
  })
  .superRefine((c, ctx) => {
    if (c.authority) return;
    for (const [name, r] of Object.entries(c.routes)) {
      if (typeof r.credential === 'string') {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', name, 'credential'],
          message: 'a lease name needs an authority section; use { file: PATH } or { env: NAME } for a local secret',
        });
      }
    }
  })
  .transform((c) => deepFreeze(c));

export type SidecarConfig = z.output<typeof sidecarSchema>;
