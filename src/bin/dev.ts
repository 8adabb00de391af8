import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthority, redisTargetOf } from '../authority/assemble.js';
import { MemoryRevocationBus } from '../bus/memory.js';
import { authoritySchema } from '../config/authority.js';
import { unknownLeaseNames } from '../config/cross-check.js';
import { expandEnv } from '../config/expand.js';
import { readDocument, validateConfig } from '../config/load.js';
import { sidecarSchema } from '../config/sidecar.js';
import { ConfigError, ListenError } from '../core/errors.js';
import { listenErrorMessage } from '../core/listen.js';
import { startDemoUpstream, type DemoUpstream } from '../dev/demo-upstream.js';
import { Sidecar } from '../sidecar/sidecar.js';
import { createAudit } from '../telemetry/audit.js';
import { createLogger } from '../telemetry/logger.js';
import { authorityInputs } from './authority.js';
import { readCaFiles, readText } from './load.js';
import { untilSignal } from './signals.js';

/**
 * `leash dev [--config FILE] [--redis URL]`: authority + sidecar in one process, the same
 * code as production (the sidecar reaches the authority over HTTPS with mTLS), with an
 * in-memory store and a generated CA. Without --config it runs the built-in example: a
 * demo upstream that only accepts leash JWTs, so one curl shows a rotating credential.
 */
const DEMO_ROUTE = '__demo__';
const BUILTIN = {
  authority: {
    listen: '127.0.0.1:0',
    trustDomain: 'leash.local',
    hostnames: ['127.0.0.1', 'localhost'],
    credentials: { demo: { kind: 'jwt', audience: 'leash-demo', scopes: ['demo:read'], ttl: '${LEASH_DEMO_TTL:-30s}' } },
    policies: [{ identities: ['join:dev-*'], credentials: ['demo'], maxTtl: '1h' }],
  },
  sidecar: {
    listen: '${LEASH_LISTEN:-127.0.0.1:8080}',
    admin: '${LEASH_ADMIN:-127.0.0.1:9090}',
    routes: {
      demo: { upstream: DEMO_ROUTE, credential: 'demo', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**', 'POST /**'] },
    },
  },
};

export async function runDev(opts: { config?: string; redis?: string }, env: NodeJS.ProcessEnv, say: (line: string) => void): Promise<number> {
  const raw = opts.config ? readText(opts.config, '--config') : '';
  const doc = opts.config ? readDocument(raw, env, opts.config) : (expandEnv(BUILTIN, env) as typeof BUILTIN);
  const extra = Object.keys(doc).filter((k) => k !== 'authority' && k !== 'sidecar');
  if (extra.length || !doc.authority || !doc.sidecar) {
    throw new ConfigError([`${opts.config}: leash dev takes { authority: …, sidecar: … }${extra.length ? ` (unknown: ${extra.join(', ')})` : ''}`]);
  }
  const authorityDoc = { listen: '127.0.0.1:0', ...(doc.authority as object), ...(opts.redis ? { redis: opts.redis } : {}) };
  const authorityConfig = validateConfig(authoritySchema, authorityDoc, 'authority');
  // As leash check: a lease name the authority section does not define is an error before anything starts.
  const unknown = unknownLeaseNames((doc.sidecar as { routes?: Record<string, { credential?: unknown }> }).routes ?? {}, Object.keys(authorityConfig.credentials));
  if (unknown.length) throw new ConfigError(unknown);
  const logger = createLogger({ level: authorityConfig.log.level });
  // Without Redis: one in-process revocation bus, the authority publishes and the sidecar
  // subscribes (DESIGN §2). With Redis the authority publishes to the Redis stream and
  // channel, and the sidecar subscribes there (below), as in production.
  const bus = authorityConfig.redis ? undefined : new MemoryRevocationBus();
  const inputs = authorityInputs(authorityConfig, env, logger.child({ component: 'authority' }));
  // Admin commands against dev mode: with LEASH_ADMIN_TOKEN set (and no admin section),
  // that token is the admin token, and the CA is written to a file the CLI can trust.
  const adminToken = inputs.adminToken ?? (env.LEASH_ADMIN_TOKEN || undefined);
  // What moves each listener, for a bind error: the built-in example reads LEASH_LISTEN /
  // LEASH_ADMIN; a --config file has its own keys (and maybe the same variables).
  const movedBy = (key: string, variable: string) =>
    !opts.config ? variable : raw.includes(`\${${variable}`) ? `${variable} (or ${key}: in ${opts.config})` : `${key}: in ${opts.config}`;
  const authority = await createAuthority({ ...inputs, adminToken, revocations: bus });
  let demo: DemoUpstream | undefined;
  let sidecar: Sidecar | undefined;
  // Everything below is undone in order whatever fails (a taken port, a start cut short by
  // a signal): nothing stays leased.
  try {
    const { host: authorityHost, port: authorityPort } = authorityConfig.listen;
    const addr = await authority.server.listen(authorityHost, authorityPort).catch((err: unknown) => {
      throw new ListenError(listenErrorMessage(err, 'authority', authorityHost, authorityPort, opts.config ? `authority.listen: in ${opts.config}` : 'authority.listen'), {}, { cause: err });
    });
    const m = authorityConfig.metrics.listen;
    if (m && authority.metricsListener) {
      await authority.metricsListener.listen(m.host, m.port).catch((err: unknown) => {
        throw new ListenError(listenErrorMessage(err, 'authority metrics', m.host, m.port, opts.config ? `authority.metrics.listen: in ${opts.config}` : 'authority.metrics.listen'), {}, { cause: err });
      });
    }
    const authorityUrl = `https://127.0.0.1:${addr.port}`;

    const sidecarDoc = structuredClone(doc.sidecar) as { routes?: Record<string, { upstream?: string }>; revocations?: unknown };
    const sharedRedis = !bus && sidecarDoc.revocations === undefined ? authorityConfig.redis : undefined;
    if (sharedRedis) sidecarDoc.revocations = { redis: sharedRedis, prefix: authorityConfig.keyPrefix };
    for (const route of Object.values(sidecarDoc.routes ?? {})) {
      if (route.upstream !== DEMO_ROUTE) continue;
      demo ??= await startDemoUpstream(new URL('/.well-known/jwks.json', authorityUrl), authority.ca.caPem, 'leash-demo');
      route.upstream = demo.url;
    }
    const identityName = `dev-${randomBytes(3).toString('hex')}`;
    const sidecarConfig = validateConfig(
      sidecarSchema,
      { ...sidecarDoc, authority: { url: authorityUrl, caFile: '(in-process)', bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } } } },
      'sidecar',
    );
    let token: string | undefined;
    sidecar = new Sidecar({
      config: sidecarConfig,
      env,
      caFiles: readCaFiles(sidecarConfig),
      logger: logger.child({ component: 'sidecar' }),
      audit: createAudit(logger.child({ component: 'sidecar' })),
      authorityCa: authority.ca.caPem,
      joinToken: () => token,
      revocationBus: bus,
      // The authority's Redis, its password (if any) already read.
      revocationsRedis: sharedRedis ? redisTargetOf(sharedRedis, inputs) : undefined,
      listenHints: { proxy: movedBy('sidecar.listen', 'LEASH_LISTEN'), admin: movedBy('sidecar.admin', 'LEASH_ADMIN') },
      // Checked against the in-process authority's credentials when the config was read.
      knownLeaseNames: Object.keys(authorityConfig.credentials),
      version: inputs.version,
    });
    // The sidecar's ports before the join token: a taken port must not cost one.
    await sidecar.bind();
    // Written before anything is issued: a failure here leaves nothing to clean up at the authority.
    let caFile: string | undefined;
    if (adminToken) {
      caFile = join(mkdtempSync(join(tmpdir(), 'leash-dev-')), 'ca.pem');
      writeFileSync(caFile, authority.ca.caPem);
    }
    ({ token } = await authority.authority.createJoinToken('leash dev', identityName, 600_000));
    const signal = untilSignal(logger);
    const addrs = await Promise.race([sidecar.start(), signal.then(() => undefined)]);
    if (addrs) {
      const base = `http://${addrs.proxy.address}:${addrs.proxy.port}`;
      say(`leash dev: authority ${authorityUrl} (${opts.redis ? 'Redis store' : 'in-memory'}), sidecar ${base} as ${sidecar.identity?.identity ?? identityName}`);
      for (const name of sidecar.routes.keys()) say(`  route /${name}/ → ${sidecar.routes.get(name)!.origin}`);
      // The export line alone on its line, so that it can be pasted whole; never the token itself.
      if (caFile) {
        say(`admin:  in another terminal, export the same LEASH_ADMIN_TOKEN and paste this line; then status, leases, trace and revoke work:`);
        const admin = addrs.admin.address.includes(':') ? `[${addrs.admin.address}]` : addrs.admin.address;
        say(`  export LEASH_AUTHORITY_URL=${authorityUrl} LEASH_CA_FILE=${caFile} LEASH_ADMIN=${admin}:${addrs.admin.port}`);
      }
      // The sidecar refreshes at half the TTL (LEASH_DEMO_TTL shortens it).
      const half = Math.round((authorityConfig.credentials.demo?.ttl ?? 30_000) / 2000);
      if (demo) say(`try:  curl ${base}/demo/whoami     (again in ${half} s: a new token)\n      curl http://${addrs.admin.address}:${addrs.admin.port}/status`);
    }
    await signal;
  } finally {
    await sidecar?.stop();
    await demo?.close();
    await authority.close();
    await bus?.close();
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }
  return 0;
}
