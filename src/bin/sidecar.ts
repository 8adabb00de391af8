import type { Sidecar } from '../sidecar/sidecar.js';
import type { RedisClient } from '../bus/redis.js';
import { auditKey } from '../core/protocol.js';
import type { RedisAuditSink } from '../telemetry/audit.js';
import type { UsageWriter } from '../telemetry/usage-writer.js';
import { untilSignal } from './signals.js';
import { packageVersion } from './version.js';
import { sidecarHygieneWarnings } from './hygiene.js';
// files.js, not load.js: the config is validated in a worker, and yaml and zod never load here.
import { bootstrapTokenReader, loadSidecarConfigIsolated, readCaFile, readCaFiles, readText, resolveRedisTarget } from './files.js';

/** `leash sidecar --config FILE`: config → logger → sidecar → signals. Resolves with the exit status. */
export async function runSidecar(source: string | { env: string }, env: NodeJS.ProcessEnv): Promise<number> {
  // A file path, or { env: NAME } for `--config-env NAME` (the injector puts the config in the pod spec).
  const config = await loadSidecarConfigIsolated(source, env);
  // The serving code is loaded once the config's worker has exited: their peaks do not add up.
  const [{ assembleSidecar }, { createAudit, PER_REQUEST_EVENTS, redisAuditSink }, { UsageWriter }, { createLogger }] = await Promise.all([
    import('../sidecar/assemble.js'),
    import('../telemetry/audit.js'),
    import('../telemetry/usage-writer.js'),
    import('../telemetry/logger.js'),
  ]);
  const caFiles = readCaFiles(config);
  const logger = createLogger({ level: config.log.level });
  // The same warnings as leash check (group-readable credential files, admin off loopback).
  for (const warning of sidecarHygieneWarnings(config)) logger.warn({ warning }, 'configuration warning');
  const authorityCa = config.authority ? readCaFile(config.authority.caFile, 'authority.caFile') : undefined;
  const revocationsRedis = config.revocations ? resolveRedisTarget(config.revocations.redis, env, 'revocations.redis') : undefined;
  // With Redis configured (audit.redis, else revocations.redis), lifecycle audit events also go
  // to the shared stream <prefix>audit (DESIGN §8), and per-request use as `usage` summaries,
  // one MULTI per flush (docs/audit.md); the per-request events themselves stay in the log.
  const auditTarget = config.audit.redis ? resolveRedisTarget(config.audit.redis, env, 'audit.redis') : revocationsRedis;
  let auditRedis: RedisClient | undefined;
  let auditSink: RedisAuditSink | undefined;
  let usage: UsageWriter | undefined;
  let audit = createAudit(logger);
  let sidecarRef: Sidecar | undefined;
  if (auditTarget) {
    const { redisConnector } = await import('../bus/connect.js');
    auditRedis = redisConnector(auditTarget, { enableAutoPipelining: true })();
    auditRedis.on('error', () => undefined);
    const key = auditKey(config.audit.prefix ?? config.revocations?.prefix);
    // Bounded per instance: a sidecar in trouble must not flush the fleet's history out of the stream.
    const budget = config.audit.stream ?? config.revocations?.auditStream;
    auditSink = redisAuditSink(auditRedis, key, logger, config.audit.maxLen, PER_REQUEST_EVENTS, budget, undefined, config.audit.maxAge);
    audit = createAudit(logger, auditSink);
    usage = new UsageWriter({
      client: { multi: () => auditRedis!.multi() },
      key,
      logger,
      instance: () => sidecarRef?.instanceId ?? '',
      credentialOf: (route) => sidecarRef?.credentialLabel(route),
      flushIntervalMs: config.audit.flushInterval,
      maxKeys: config.audit.maxKeys,
      maxLen: config.audit.maxLen,
      maxAgeMs: config.audit.maxAge,
      budget: config.audit.usageBudget,
    });
  }
  const listenHints = typeof source === 'string' ? listenHintsFor(source) : { proxy: `listen: in $${source.env}`, admin: `admin: in $${source.env}` };
  const { sidecar } = assembleSidecar({
    config,
    env,
    caFiles,
    logger,
    audit,
    authorityCa,
    readAuthorityCa: config.authority ? () => readText(config.authority!.caFile, 'authority.caFile') : undefined,
    bootstrapToken: bootstrapTokenReader(config, env),
    revocationsRedis,
    listenHints,
    usage,
    version: packageVersion(),
  });
  sidecarRef = sidecar;
  usage?.start();
  // Signals are handled from here on: a SIGTERM while the first leases are being taken
  // (a pod deleted during its startup) stops in order and releases them.
  const signal = untilSignal(logger);
  try {
    await Promise.race([sidecar.start(), signal]);
    await signal;
  } finally {
    // Also when start fails (its listeners, or after leasing): nothing stays leased.
    await sidecar.stop();
    // After the drain: the last requests' summaries are written before the connection goes.
    await usage?.close();
    auditSink?.close();
    await auditRedis?.quit().catch(() => auditRedis?.disconnect());
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }
  return 0;
}

/**
 * What moves each listener: the config key, and the variable too when the config takes
 * its address from one (examples/sidecar.yaml: `listen: "${LEASH_LISTEN:-127.0.0.1:8080}"`).
 */
function listenHintsFor(configPath: string): { proxy: string; admin: string } {
  const text = readText(configPath, '--config');
  const hint = (key: string, variable: string) => (text.includes(`\${${variable}`) ? `${variable} (or ${key}: in ${configPath})` : `${key}: in ${configPath}`);
  return { proxy: hint('listen', 'LEASH_LISTEN'), admin: hint('admin', 'LEASH_ADMIN') };
}
