import { Sidecar } from '../sidecar/sidecar.js';
import { createAudit } from '../telemetry/audit.js';
import { createLogger } from '../telemetry/logger.js';
import { untilSignal } from './signals.js';
import { joinTokenReader, loadSidecarConfig, readCaFiles, readText, resolveRedisTarget } from './load.js';

/** `leash sidecar --config FILE`: config → logger → sidecar → signals. Resolves with the exit status. */
export async function runSidecar(configPath: string, env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadSidecarConfig(configPath, env);
  const caFiles = readCaFiles(config);
  const logger = createLogger({ level: config.log.level });
  const authorityCa = config.authority ? readText(config.authority.caFile, 'authority.caFile') : undefined;
  const revocationsRedis = config.revocations ? resolveRedisTarget(config.revocations.redis, env, 'revocations.redis') : undefined;
  const sidecar = new Sidecar({ config, env, caFiles, logger, audit: createAudit(logger), authorityCa, joinToken: joinTokenReader(config, env), revocationsRedis });
  await sidecar.start();
  await untilSignal(logger);
  await sidecar.stop();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  return 0;
}
