import { KeyedRateLimiter } from './rate-limit.js';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { AuthorityConfig, CredentialConfig } from '../config/authority.js';
import { type Clock, systemClock } from '../core/clock.js';
import { certificateNotAfterMs, TlsReloader, type TlsSource } from '../core/tls-reload.js';
import { ConfigError } from '../core/errors.js';
import { redisConnector } from '../bus/connect.js';
import { redisTargetFrom, type RedisTarget } from '../bus/target.js';
import type { RedisClient } from '../bus/redis.js';
import { MemoryRevocationBus } from '../bus/memory.js';
import { RedisRevocationPublisher } from '../bus/redis.js';
import type { RevocationPublisher } from '../bus/types.js';
import { auditKey, parseAuditEntry, redisTimeMs } from '../core/protocol.js';
import type { RedisTargetConfig } from '../config/common.js';
import { createAudit, redisAuditSink } from '../telemetry/audit.js';
import { selectTraceEntries } from './trace.js';
import { AuthorityMetrics, UNKNOWN_CREDENTIAL } from '../telemetry/authority-metrics.js';
import { ClonedLeaseWatcher, clonedLeaseScan, type ClonedLease } from './cloned-leases.js';
import { MetricsListener } from './http/metrics-listener.js';
import { Authority } from './authority.js';
import { CertificateAuthority, trustedCaCertificates } from '../pki/ca.js';
import { AuthorityServer } from './http/server.js';
import { createIssuer, JwtKeyRing, type Issuer, type IssuerSpec, type SecretValue } from './issuers/index.js';
import { JoinTokens } from './leases/join-tokens.js';
import { KubernetesVerifier } from './attestors/kubernetes.js';
import type { AttestationVerifier } from '../core/attestation.js';
import { MemoryStore } from './leases/memory.js';
import { RedisStore } from './leases/redis.js';
import type { AuthorityStore } from './leases/types.js';
import { compilePolicy } from './policy/policy.js';
import { checkPersistence, logPersistence } from './redis-persistence.js';
import { RevocationMemory, reseed } from './revocation-memory.js';

/**
 * Builds a running authority from a validated config and what the entry point read
 * (CA and TLS PEMs, the admin token, secrets resolved to values or readers). Used by
 * `leash authority` and by `leash dev`, so both run the same code.
 */
export interface AuthorityInputs {
  config: AuthorityConfig;
  env: Readonly<Record<string, string | undefined>>;
  /**
   * CA cert + key PEMs (config `ca`); absent: a CA is generated (dev only). `trustedPems`:
   * the PEMs of `ca.trustedCertFiles`, CAs whose identity certificates are accepted too.
   */
  ca?: { certPem: string; keyPem: string; trustedPems?: readonly string[] };
  /** TLS cert + key for the listener (config `tls`); absent: issued by the CA for `hostnames`. */
  tls?: { certPem: string; keyPem: string };
  /**
   * `tls.certFile`/`tls.keyFile` as the entry point sees them: looked at every
   * TLS_RELOAD_MS, a changed pair (cert-manager's renewal) serves new connections at once.
   * Given, it is read for the listener's first certificate too (instead of `tls`).
   */
  tlsFiles?: TlsSource;
  adminToken?: string;
  /** Reads `admin.token` again (a `{ file }` source): a rotated token file is used without a restart. */
  readAdminToken?: () => string;
  /** Resolves a `{ file }` / `{ env }` secret source to a value reader. */
  secret: (source: { file: string } | { env: string }) => SecretValue;
  /** PEMs of files named in credentials (oauth2 caFile), read by the entry point. */
  files: ReadonlyMap<string, string>;
  logger: Logger;
  clock?: Clock;
  /** Use this store instead of the one the config names (tests). */
  store?: AuthorityStore;
  /**
   * Where revocations are published. Absent: the Redis stream + channel `<keyPrefix>revocations`
   * when `redis` is configured, else an in-process bus (`leash dev` passes the one its
   * sidecar subscribes to). A bus passed here is not closed with the authority.
   */
  revocations?: RevocationPublisher;
  /** The package version for leash_build_info, read by the entry point. */
  version?: string;
  /**
   * Config `kubernetes:` resolved by the entry point (in-cluster defaults applied, CA read,
   * the authority's own token as a reader: the kubelet rotates it). Required when the
   * config has `kubernetes:`.
   */
  kubernetes?: { apiServer: URL; caPem?: string; readCa?: () => string; token: () => string };
}

export interface RunningAuthority {
  authority: Authority;
  server: AuthorityServer;
  ca: CertificateAuthority;
  keys: JwtKeyRing;
  store: AuthorityStore;
  metrics: AuthorityMetrics;
  /** The revocation publisher in use (inputs.revocations, Redis, or an in-process bus). */
  revocations: RevocationPublisher;
  /** /metrics on its own listener, when `metrics.listen` is set (the entry point binds it). */
  metricsListener: MetricsListener | undefined;
  close(): Promise<void>;
}

/**
 * How long a revocation matters: the longest any credential, policy or identity certificate
 * could last. Older stream entries concern nothing anyone can still hold (DESIGN §7 trim).
 */
export function revocationWindowMs(config: AuthorityConfig): number {
  return Math.max(
    config.identity.ttl,
    ...Object.values(config.credentials).map((c) => c.ttl),
    ...config.policies.map((p) => p.maxTtl),
  );
}

function issuerSpec(c: CredentialConfig, inputs: AuthorityInputs): IssuerSpec {
  switch (c.kind) {
    case 'static':
      return { kind: 'static', source: c.source, ttlMs: c.ttl };
    case 'jwt':
      return { kind: 'jwt', audience: c.audience, scopes: [...c.scopes], ttlMs: c.ttl };
    case 'oauth2':
      return {
        kind: 'oauth2',
        tokenUrl: c.tokenUrl,
        clientId: c.clientId,
        clientSecret: inputs.secret(c.clientSecret),
        scope: c.scope,
        audience: c.audience,
        authMethod: c.clientAuth === 'post' ? 'client_secret_post' : 'client_secret_basic',
        timeoutMs: c.timeout,
        caPem: c.caFile ? inputs.files.get(c.caFile) : undefined,
        ttlMs: c.ttl,
      };
    case 'exec':
      return { kind: 'exec', command: [...c.command], timeoutMs: c.timeout, ttlMs: c.ttl };
  }
}

/** Config's Redis target with its password source read now (connections are made at start). */
export function redisTargetOf(target: RedisTargetConfig, inputs: Pick<AuthorityInputs, 'secret'>): RedisTarget {
  return redisTargetFrom(
    target,
    (source) => {
      const v = inputs.secret(source);
      return typeof v === 'function' ? (v() as string) : v;
    },
    // Read again at each reconnection: a rotated `{ file }` password needs no restart.
    (source) => {
      const v = inputs.secret(source);
      return typeof v === 'function' ? () => v() as string : undefined;
    },
  );
}

const SERVER_CERT_TTL_MS = 30 * 86_400_000;
/** How often `signing.keysDir` is read again. */
const SIGNING_KEYS_RELOAD_MS = 60_000;
const signingKidOf = (keys: JwtKeyRing): string | undefined => {
  try {
    return keys.signer().kid;
  } catch {
    return undefined; // every key retired: the issuer says so per lease
  }
};
/** How often `tls.certFile`/`tls.keyFile` are looked at (a stat of each). */
const TLS_RELOAD_MS = 5_000;
/** How often the authority looks at the revocation stream's epoch besides at each (re)connection. */
const EPOCH_CHECK_MS = 5_000;

export async function createAuthority(inputs: AuthorityInputs): Promise<RunningAuthority> {
  const { config, logger } = inputs;
  const clock = inputs.clock ?? systemClock;
  const ca = inputs.ca
    ? CertificateAuthority.load(inputs.ca.certPem, inputs.ca.keyPem, config.trustDomain)
    : CertificateAuthority.generate(config.trustDomain);
  if (!inputs.ca) logger.warn('no ca configured: generated an in-memory CA (dev only; identities do not survive a restart)');
  // Client certificates are accepted from the signing CA and from ca.trustedCertFiles (a CA
  // rotation's overlap); the TLS listener names all of them in its certificate request.
  const extraCas = (inputs.ca?.trustedPems ?? []).flatMap((pem, i) => trustedCaCertificates(pem, `ca.trustedCertFiles[${i}]`, clock.wallMs()));
  const trustedCas = [ca.certificate, ...extraCas.filter((c) => !c.raw.equals(ca.certificate.raw))];
  const trustedPem = trustedCas.map((c) => c.toString()).join('');
  if (trustedCas.length > 1) logger.info({ trustedCas: trustedCas.map((c) => ({ subject: c.subject, fingerprint256: c.fingerprint256, notAfter: new Date(c.validTo).toISOString() })) }, 'client certificates are accepted from more than one CA (ca.trustedCertFiles)');
  // Without a configured TLS pair the authority issues its own listener certificate from
  // its CA, valid 30 days, and replaces it every 15 days while running.
  const ownTls = () => {
    const c = ca.serverCertificate(
      config.hostnames.filter((h) => !isIP(h)),
      config.hostnames.filter((h) => isIP(h)),
      SERVER_CERT_TTL_MS,
      clock.wallMs(),
    );
    return { certPem: c.certPem, keyPem: c.keyPem };
  };
  // A configured pair is looked at every TLS_RELOAD_MS: a renewed certificate (cert-manager
  // rewrites the Secret before the old one expires) was served only after a restart, and a
  // replica nobody restarted served an expired certificate to every sidecar.
  let server: AuthorityServer | undefined;
  const reloader = inputs.tlsFiles
    ? new TlsReloader(inputs.tlsFiles, logger, (pair) => server?.server.setSecureContext({ cert: pair.certPem, key: pair.keyPem, ca: trustedPem }), 'authority', () => clock.wallMs())
    : undefined;
  const tls = reloader?.currentPair ?? inputs.tls ?? ownTls();
  let tlsNotAfterMs = certificateNotAfterMs(tls.certPem);
  const keys = config.signing ? await JwtKeyRing.fromDir(config.signing.keysDir, { clock }) : await JwtKeyRing.generate({ clock });
  const jwtIssuer = config.signing?.issuer ?? `https://${config.hostnames[0] ?? 'leash-authority'}`;
  const issuers = new Map<string, { issuer: Issuer; ttlMs: number }>();
  for (const [name, c] of Object.entries(config.credentials)) {
    issuers.set(name, { issuer: createIssuer(issuerSpec(c, inputs), { credential: name, keys, jwtIssuer, env: inputs.env }), ttlMs: c.ttl });
  }
  // One Redis connection for the store, the revocation stream and the audit stream; closed with the authority.
  const redis = config.redis && (!inputs.store || !inputs.revocations) ? redisConnector(redisTargetOf(config.redis, inputs), { maxRetriesPerRequest: 2, enableAutoPipelining: true })() : undefined;
  redis?.on('error', (err: Error) => logger.warn({ code: (err as NodeJS.ErrnoException).code }, 'redis connection error'));
  const store = inputs.store ?? (redis ? new RedisStore(redis, { prefix: config.keyPrefix, clock }) : new MemoryStore({ clock }));
  // With a Redis of our own, this replica remembers what it revoked and writes it back when
  // Redis comes back empty (the stream's epoch changed): see revocation-memory.ts.
  const memory = redis && !inputs.revocations ? new RevocationMemory(revocationWindowMs(config)) : undefined;
  const redisPublisher =
    redis && !inputs.revocations
      ? new RedisRevocationPublisher(redis, revocationWindowMs(config), {
          prefix: config.keyPrefix,
          clock: () => clock.wallMs(),
          onReset: async () => {
            const plan = memory!.plan(clock.wallMs());
            logger.warn(
              { instances: plan.instances.length, revocations: plan.revocations.length },
              'redis lost its data (revocation stream epoch changed): writing back the revocations and revoked-instance marks this replica remembers',
            );
            await reseed(plan, { revokeIdentity: (i, until) => store.revokeIdentity(i, until, Math.max(0, until - clock.wallMs())), republish: (r) => redisPublisher!.republish(r) });
          },
        })
      : undefined;
  const revocations = inputs.revocations ?? redisPublisher ?? new MemoryRevocationBus(() => clock.wallMs());
  if (!inputs.revocations && !redis) logger.warn('no redis configured: revocations go to an in-process bus (reaches only a sidecar in this process)');
  const policy = compilePolicy(
    config.policies.map((p) => ({ identities: p.identities, credentials: p.credentials, maxTtlMs: p.maxTtl })),
    config.trustDomain,
  );
  // Redis' clock minus ours, sampled with every epoch check (TIME, half the round trip
  // added): certificates are also refused once expired by Redis' clock (Authority.storeNow).
  let storeOffsetMs: number | undefined;
  const metrics = new AuthorityMetrics(
    async (limit) => {
      const now = clock.wallMs();
      return (await store.listLeases({ limit })).map((l) => ({ credential: l.credential, ageSeconds: (now - l.issuedAtMs) / 1000 }));
    },
    {
      credentials: Object.keys(config.credentials),
      version: inputs.version ?? 'unknown',
      now: () => clock.monotonicMs(),
      gcDuration: config.metrics.gcDuration,
      storeClockOffsetMs: () => storeOffsetMs,
      certificateExpiryMs: () => ({ ca: ca.notAfter.getTime(), tls: reloader ? reloader.notAfterMs : tlsNotAfterMs }),
      signingKid: () => signingKidOf(keys),
    },
  );
  let skewWarnedAt = -Infinity;
  const sampleStoreClock = async (client: RedisClient) => {
    const t0 = clock.wallMs();
    const redisMs = redisTimeMs(await client.time());
    const t1 = clock.wallMs();
    if (!Number.isFinite(redisMs)) return;
    storeOffsetMs = redisMs - (t0 + t1) / 2;
    if (Math.abs(storeOffsetMs) > 60_000 && clock.monotonicMs() - skewWarnedAt > 600_000) {
      skewWarnedAt = clock.monotonicMs();
      logger.warn({ offsetSeconds: Math.round(storeOffsetMs / 1000) }, "this replica's clock and Redis' disagree by more than a minute: sync clocks (NTP); certificates are refused by the later of the two");
    }
  };
  const audit = createAudit(logger, redis ? redisAuditSink(redis, auditKey(config.keyPrefix), logger, config.audit.maxLen, undefined, undefined, clock, config.audit.maxAge) : undefined);
  const authority = new Authority({
    trustDomain: config.trustDomain,
    ca,
    trustedCas,
    issuers,
    store,
    joinTokens: new JoinTokens(store, ca.deriveKey('join tokens')),
    attestors: kubernetesAttestors(config, inputs),
    policy,
    identityTtlMs: config.identity.ttl,
    joinTokenMaxTtlMs: config.joinTokens.maxTtl,
    metrics,
    revocations,
    audit,
    auditSearch: redis ? auditSearcher(redis, auditKey(config.keyPrefix)) : undefined,
    logger,
    clock,
    leaseRateLimit: config.limits.leases.perMinute > 0 ? new KeyedRateLimiter(config.limits.leases, () => clock.monotonicMs()) : undefined,
    bootstrapRateLimit: config.limits.bootstraps.perMinute > 0 ? new KeyedRateLimiter(config.limits.bootstraps, () => clock.monotonicMs()) : undefined,
    revocationMemory: memory,
    storeNow: redis ? () => (storeOffsetMs === undefined ? undefined : clock.wallMs() + storeOffsetMs) : undefined,
    resetCheck: redisPublisher && {
      check: () => redisPublisher.checkEpoch(),
      resets: () => redisPublisher.resets,
      // The fast path needs the store on the publisher's connection (ordered reads): ours.
      ...(inputs.store ? {} : { settled: () => redisPublisher.settledEpoch, read: () => redisPublisher.readEpoch() }),
    },
  });
  server = new AuthorityServer(authority, {
    cert: tls.certPem,
    key: tls.keyPem,
    caPem: trustedPem,
    jwks: () => keys.jwks(),
    adminToken: inputs.adminToken,
    readAdminToken: inputs.readAdminToken,
    registry: metrics.registry,
    logger,
    connections: config.connections,
    metricsOnApi: config.metrics.listen === undefined,
  });
  const metricsListener = config.metrics.listen ? new MetricsListener(metrics.registry) : undefined;
  const timers: NodeJS.Timeout[] = [];
  if (!inputs.tls) {
    timers.push(
      setInterval(() => {
        const next = ownTls();
        server!.server.setSecureContext({ cert: next.certPem, key: next.keyPem, ca: trustedPem });
        tlsNotAfterMs = certificateNotAfterMs(next.certPem);
        logger.info('authority TLS certificate renewed');
      }, SERVER_CERT_TTL_MS / 2),
    );
  }
  if (reloader) timers.push(setInterval(() => reloader.check(), TLS_RELOAD_MS));
  if (config.signing) {
    // New key files are picked up without a restart (a `*.next.pem` is published only);
    // removed ones are retired gracefully. Every change is logged: the rotation's progress.
    let seen = JSON.stringify({ signing: signingKidOf(keys), published: keys.kids() });
    logger.info({ signing: signingKidOf(keys), published: keys.kids() }, 'JWT signing keys loaded');
    timers.push(
      setInterval(
        () =>
          void keys.reload().then(
            () => {
              const now = { signing: signingKidOf(keys), published: keys.kids() };
              if (JSON.stringify(now) !== seen) logger.info(now, 'JWT signing keys changed');
              seen = JSON.stringify(now);
            },
            (err: unknown) => logger.warn({ err }, 'signing keys reload failed'),
          ),
        SIGNING_KEYS_RELOAD_MS,
      ),
    );
  }
  if (redis && redisPublisher) {
    const epochCheck = () => {
      void redisPublisher.checkEpoch().catch((err: unknown) => logger.warn({ err }, 'revocation stream epoch check failed'));
      void sampleStoreClock(redis).catch(() => undefined); // TIME refused (ACL): our clock alone
    };
    // At every (re)connection — a restart of Redis is one — and periodically: a reset is
    // re-seeded even when nothing is being leased or revoked (a verifier that starts now
    // reads the stream whole).
    redis.on('ready', epochCheck);
    timers.push(setInterval(epochCheck, EPOCH_CHECK_MS));
  }
  if (redis) {
    redis.once('ready', () => void checkPersistence(redis).then((p) => logPersistence(logger, p), () => undefined));
    // One lease in use on two instances (anomaly.cloned_credential, docs/anomalies.md): read
    // the usage summaries the stream gained every audit.anomalyScan.
    const scan = clonedLeaseScan({ redis, key: auditKey(config.keyPrefix), watcher: new ClonedLeaseWatcher(), nowMs: () => clock.wallMs(), lookbackMs: CLONED_LOOKBACK_MS });
    let scanning = false;
    let scanWarnedAt = -Infinity;
    const report = async (c: ClonedLease) => {
      // The credential and fingerprint from the lease record when it is still held; else the
      // sidecar's label, only when it names a configured credential (the stream is writable by
      // every sidecar: nothing from it becomes a metric label or a log field unchecked).
      const record = await store.getLease(c.lease).catch(() => undefined);
      const label = c.credentialLabel?.startsWith('lease:') ? c.credentialLabel.slice('lease:'.length) : undefined;
      const credential = record && issuers.has(record.credential) ? record.credential : label && issuers.has(label) ? label : undefined;
      const fingerprint = record?.fingerprint ?? (/^sha256:[0-9a-f]{12}$/.test(c.fingerprint ?? '') ? c.fingerprint : undefined);
      metrics.anomaly(credential ?? UNKNOWN_CREDENTIAL, 'cloned_credential');
      audit.emit('anomaly.cloned_credential', { lease: c.lease, credential, fingerprint, instances: c.instances.map((i) => i.slice(0, 128)).join(',') });
    };
    timers.push(
      setInterval(() => {
        if (scanning) return;
        scanning = true;
        void scan()
          .then(async (found) => {
            for (const c of found) await report(c);
          })
          .catch((err: unknown) => {
            if (clock.monotonicMs() - scanWarnedAt > 600_000) {
              scanWarnedAt = clock.monotonicMs();
              logger.warn({ err }, 'reading the audit stream for cloned credentials failed');
            }
          })
          .finally(() => (scanning = false));
      }, config.audit.anomalyScan),
    );
  }
  for (const t of timers) t.unref();
  return {
    authority,
    server,
    ca,
    keys,
    store,
    metrics,
    revocations,
    metricsListener,
    async close() {
      for (const t of timers) clearInterval(t);
      await Promise.all([server.close(), metricsListener?.close()]);
      await Promise.all([...issuers.values()].map((i) => i.issuer.close()));
      if (!inputs.store) await store.close();
      if (!inputs.revocations) await revocations.close();
      await redis?.quit().catch(() => redis.disconnect());
    },
  };
}

/** The Kubernetes attestor when `kubernetes:` is configured (node attestation, docs/authority.md). */
function kubernetesAttestors(config: AuthorityConfig, inputs: AuthorityInputs): AttestationVerifier[] {
  if (!config.kubernetes) return [];
  if (!inputs.kubernetes) throw new ConfigError(['kubernetes: the API server address, CA and token were not resolved']);
  return [new KubernetesVerifier({ ...inputs.kubernetes, audience: config.kubernetes.audience, timeoutMs: config.kubernetes.timeout })];
}

/** At start, the usage summaries of the last hour are read for cloned leases (docs/anomalies.md). */
const CLONED_LOOKBACK_MS = 3_600_000;

/**
 * Audit entries naming a fingerprint (as `fingerprint` or `previousFingerprint`) or one of
 * its lease ids (the `usage` summaries), oldest first, from the whole stream (newest first,
 * a page at a time, at most `max` entries: the stream's own retention bounds it). Only
 * entries that name a fingerprint or a lease are kept while paging. A fixed window of the
 * newest entries let one agent's refused requests push a value's whole history out of
 * `leash trace`'s sight in about half an hour, which then said nobody had held it.
 */
function auditSearcher(redis: RedisClient, key: string, page = 1_000, max = 1_000_000) {
  return async (fingerprint: string, leaseIds: string[]): Promise<Array<Record<string, string>>> => {
    const kept: Array<Record<string, string>> = [];
    let end = '+';
    for (let read = 0; read < max; ) {
      const entries = (await redis.xrevrange(key, end, '-', 'COUNT', page)) as Array<[string, string[]]>;
      for (const [id, fields] of entries) {
        const e = parseAuditEntry(id, fields);
        if (e.fingerprint !== undefined || e.previousFingerprint !== undefined || e.lease !== undefined) kept.push(e);
      }
      read += entries.length;
      if (entries.length < page) break;
      end = `(${entries[entries.length - 1]![0]}`;
    }
    return selectTraceEntries(fingerprint, kept.reverse(), leaseIds);
  };
}
