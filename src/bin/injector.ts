import { parseInjectorConfig } from '../config/injector.js';
import { ListenError } from '../core/errors.js';
import { listenErrorMessage } from '../core/listen.js';
import { InjectorServer } from '../injector/server.js';
import { tlsFiles } from './files.js';
import { createLogger } from '../telemetry/logger.js';
import { readText } from './load.js';
import { untilSignal } from './signals.js';

/** `leash injector --config FILE`: config → TLS files → HTTPS webhook → signals. Resolves with the exit status. */
export async function runInjector(configPath: string, env: NodeJS.ProcessEnv): Promise<number> {
  const injector = parseInjectorConfig(readText(configPath, '--config'), env, configPath);
  const { config } = injector;
  const logger = createLogger({ level: config.log.level, name: 'injector' });
  const server = new InjectorServer({ injector, tls: tlsFiles(config.tls.certFile, config.tls.keyFile), logger, reloadInterval: config.tls.reloadInterval });
  // A taken port is an operator's error with a key to move it (LEASH_ERR_LISTEN), as for the sidecar and authority.
  const addr = await server.listen(config.listen.host, config.listen.port).catch(async (err: unknown) => {
    await server.close();
    throw new ListenError(listenErrorMessage(err, 'injector webhook', config.listen.host, config.listen.port, `listen: in ${configPath}`), {}, { cause: err });
  });
  logger.info({ listen: `${addr.address}:${addr.port}`, routes: Object.keys(config.routes), image: config.image }, 'leash injector started');
  await untilSignal(logger);
  await server.close();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  return 0;
}

export { tlsFiles } from './files.js';
