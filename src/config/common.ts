import { z } from 'zod';
import { parseDuration } from '../core/duration.js';
import { hasSecretSegment, INLINE_SECRET, isFileContents, looksLikeSecret } from './secret-shape.js';

/** Building blocks shared by every config schema. */

export const duration = (what = 'a duration') =>
  z.string({ error: `must be ${what} like "90s", "15m" or "1h"` }).transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `must be ${what} like "90s", "15m" or "1h"` });
      return z.NEVER;
    }
    return ms;
  });

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port` or `[v6]:port`; port 0 asks the OS for a free one (tests). */
export const hostPort = z.string({ error: 'must be "host:port"' }).transform((text, ctx): HostPort => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: 'must be "host:port", e.g. "127.0.0.1:8080"' });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2])!, port };
});

/**
 * A secret is never written inline (DESIGN §4): it comes from a file or an environment
 * variable. A variable *name* or a path that is itself a secret (`{ env: "${GITHUB_TOKEN}" }`
 * expanded) is refused like an inline one: it would be printed by `leash check`, on
 * /status and in logs as the source's name.
 */
export const secretSource = z.union(
  [
    z.strictObject({ file: z.string().min(1, 'must be a file path').refine((p) => !hasSecretSegment(p), INLINE_SECRET) }),
    z.strictObject({
      env: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
        .refine((n) => !looksLikeSecret(n), INLINE_SECRET),
    }),
  ],
  { error: 'must be { file: PATH } or { env: NAME }; secrets are never written inline' },
);
export type SecretSource = z.infer<typeof secretSource>;

/** Why a `filePath` was refused; its value is never repeated. */
export const FILE_CONTENTS = 'must be the path of a file, not its contents (a PEM block, key or token written here is never shown)';

/**
 * The path of a file leash reads (a CA, a certificate and its key, a token file, the JWT
 * keys directory). Paths are printed (`leash check`, "cannot read PATH" at start), and
 * `keyFile: ${CA_KEY}` with the key itself in the variable, as secrets are often handed
 * to containers, would print the key: a path with a segment that can only be a secret
 * (PEM, a vendor key, a JWT, `Bearer …`), or with a line break, is refused without echo.
 */
export const filePath = z
  .string()
  .min(1, 'must be a file path')
  .refine((p) => !isFileContents(p), FILE_CONTENTS);

export const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/**
 * `metrics:` of a sidecar or authority file. `gcDuration` turns on prom-client's
 * `nodejs_gc_duration_seconds`, whose gc observer costs ~5 % of the proxy's CPU at
 * saturation (telemetry/default-metrics.ts); off by default.
 */
export const metricsOptions = z.strictObject({ gcDuration: z.boolean().default(false) }).prefault({});

// Here for the schemas; in plain.ts so that the serving thread can freeze without zod.
export { deepFreeze } from './plain.js';

const redisNode = z.strictObject({ host: z.string().min(1), port: z.int().min(1).max(65535) });
const redisUrl = z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL');
/**
 * Redis: a redis:// URL (single node), the same with its password from a source (`{ url,
 * password }`: the URL may name the user, never the password), a Sentinel group, or
 * Cluster seed nodes.
 */
export const redisTarget = z.union(
  [
    redisUrl,
    z.strictObject({
      url: redisUrl.refine((u) => !urlPassword(u), 'must not carry the password: it is read from `password`'),
      password: secretSource.optional(),
    }),
    z.strictObject({ sentinels: z.array(redisNode).min(1), name: z.string().min(1), password: secretSource.optional() }),
    z.strictObject({ cluster: z.array(redisNode).min(1), password: secretSource.optional() }),
  ],
  { error: 'must be a redis:// URL, { url, password }, { sentinels: [{host, port}], name } or { cluster: [{host, port}] }' },
);

function urlPassword(u: string): boolean {
  try {
    return new URL(u).password !== '';
  } catch {
    return false;
  }
}
export type RedisTargetConfig = z.infer<typeof redisTarget>;
