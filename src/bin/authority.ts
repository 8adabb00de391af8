import { createAuthority } from '../authority/assemble.js';
import { authoritySchema, type AuthorityConfig } from '../config/authority.js';
import type { SecretSource } from '../config/common.js';
import { parseConfig } from '../config/load.js';
import { ConfigError } from '../core/errors.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { readText } from './load.js';
import { untilSignal } from './signals.js';
import { packageVersion } from './version.js';

/** `leash authority --config FILE`: config → files and secrets → authority → listener → signals. */
export function loadAuthorityConfig(path: string, env: NodeJS.ProcessEnv): AuthorityConfig {
  return parseConfig(authoritySchema, readText(path, '--config'), env, path);
}

/** A secret source as a reader, so a rotated file is picked up on the next use. */
export function secretReader(source: SecretSource, env: NodeJS.ProcessEnv, where: string): () => string {
  return () => {
    const value = 'env' in source ? env[source.env]?.trim() : readText(source.file, where).trim();
    if (!value) throw new ConfigError([`${where}: the secret source is empty or unset`]);
    return value;
  };
}

export function authorityInputs(config: AuthorityConfig, env: NodeJS.ProcessEnv, logger: Logger) {
  const files = new Map<string, string>();
  for (const [name, c] of Object.entries(config.credentials)) {
    if (c.kind === 'oauth2' && c.caFile) files.set(c.caFile, readText(c.caFile, `credentials.${name}.caFile`));
  }
  return {
    config,
    env,
    ca: config.ca ? { certPem: readText(config.ca.certFile, 'ca.certFile'), keyPem: readText(config.ca.keyFile, 'ca.keyFile') } : undefined,
    tls: config.tls ? { certPem: readText(config.tls.certFile, 'tls.certFile'), keyPem: readText(config.tls.keyFile, 'tls.keyFile') } : undefined,
    adminToken: config.admin ? secretReader(config.admin.token, env, 'admin.token')() : undefined,
    secret: (s: SecretSource) => secretReader(s, env, 'credentials'),
    files,
    logger,
    version: packageVersion(),
  };
}

export async function runAuthority(configPath: string, env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadAuthorityConfig(configPath, env);
  const logger = createLogger({ level: config.log.level });
  const running = await createAuthority(authorityInputs(config, env, logger));
  const addr = await running.server.listen(config.listen.host, config.listen.port);
  logger.info({ listen: `${addr.address}:${addr.port}`, trustDomain: config.trustDomain, credentials: Object.keys(config.credentials) }, 'leash authority started');
  await untilSignal(logger);
  await running.close();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  return 0;
}
