import { Sidecar } from '../sidecar/sidecar.js';
import type { RedisClient } from '../bus/redis.js';
import { createAudit, PER_REQUEST_EVENTS, redisAuditSink, type RedisAuditSink } from '../telemetry/audit.js';
import { createLogger } from '../telemetry/logger.js';
import { untilSignal } from './signals.js';
import { packageVersion } from './version.js';
import { sidecarHygieneWarnings } from './hygiene.js';
import { joinTokenReader, loadSidecarConfig, readCaFiles, readText, resolveRedisTarget } from './load.js';

/** `leash sidecar --config FILE`: config → logger → sidecar → signals. Resolves with the exit status. */
export async function runSidecar(configPath: string, env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadSidecarConfig(configPath, env);
  const caFiles = readCaFiles(config);
  const logger = createLogger({ level: config.log.level });
  // The same warnings as leash check (group-readable credential files, admin off loopback).
  for (const warning of sidecarHygieneWarnings(config)) logger.warn({ warning }, 'configuration warning');
  const authorityCa = config.authority ? readText(config.authority.caFile, 'authority.caFile') : undefined;
  const revocationsRedis = config.revocations ? resolveRedisTarget(config.revocations.redis, env, 'revocations.redis') : undefined;
  // With Redis configured, lifecycle audit events also go to the shared stream <prefix>audit
  // (DESIGN §8); per-request events stay in the log (one XADD per request is too much).
  let auditRedis: RedisClient | undefined;
  let auditSink: RedisAuditSink | undefined;
  let audit = createAudit(logger);
  if (revocationsRedis && config.revocations) {
    const { redisConnector } = await import('../bus/connect.js');
    auditRedis = redisConnector(revocationsRedis, { enableAutoPipelining: true })();
    auditRedis.on('error', () => undefined);
    // Bounded per instance: a sidecar in trouble must not flush the fleet's history out of the stream.
    auditSink = redisAuditSink(auditRedis, `${config.revocations.prefix}audit`, logger, undefined, PER_REQUEST_EVENTS, config.revocations.auditStream);
    audit = createAudit(logger, auditSink);
  }
  const listenHints = listenHintsFor(configPath);
  const sidecar = new Sidecar({ config, env, caFiles, logger, audit, authorityCa, joinToken: joinTokenReader(config, env), revocationsRedis, listenHints, version: packageVersion() });
  // Signals are handled from here on: a SIGTERM while the first leases are being taken
  // (a pod deleted during its startup) stops in order and releases them.
  const signal = untilSignal(logger);
  try {
    await Promise.race([sidecar.start(), signal]);
    await signal;
  } finally {
    // Also when start fails (its listeners, or after leasing): nothing stays leased.
    await sidecar.stop();
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
