import { createAuthority } from '../authority/assemble.js';
import { authoritySchema, type AuthorityConfig } from '../config/authority.js';
import type { SecretSource } from '../config/common.js';
import { parseConfig } from '../config/load.js';
import { ConfigError, ListenError } from '../core/errors.js';
import { listenErrorMessage } from '../core/listen.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { readCaFile, readText } from './load.js';
import { tlsFiles } from './files.js';
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
    if (c.kind === 'oauth2' && c.caFile) files.set(c.caFile, readCaFile(c.caFile, `credentials.${name}.caFile`));
  }
  return {
    config,
    env,
    ca: config.ca
      ? {
          certPem: readText(config.ca.certFile, 'ca.certFile'),
          keyPem: readText(config.ca.keyFile, 'ca.keyFile'),
          trustedPems: config.ca.trustedCertFiles.map((f, i) => readText(f, `ca.trustedCertFiles[${i}]`)),
        }
      : undefined,
    tls: config.tls ? { certPem: readText(config.tls.certFile, 'tls.certFile'), keyPem: readText(config.tls.keyFile, 'tls.keyFile') } : undefined,
    tlsFiles: config.tls ? tlsFiles(config.tls.certFile, config.tls.keyFile) : undefined,
    adminToken: config.admin ? secretReader(config.admin.token, env, 'admin.token')() : undefined,
    // A token file is read again on every admin call (several lines: several tokens accepted).
    readAdminToken: config.admin && 'file' in config.admin.token ? secretReader(config.admin.token, env, 'admin.token') : undefined,
    secret: (s: SecretSource) => secretReader(s, env, 'credentials'),
    files,
    logger,
    version: packageVersion(),
    kubernetes: kubernetesInputs(config, env),
  };
}

/** In-cluster defaults (the pod's own service account), as client-go's rest.InClusterConfig. */
export const IN_CLUSTER = {
  tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
  caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
};

/** Config `kubernetes:` with its defaults applied and files read; the token stays a reader (rotated). */
export function kubernetesInputs(config: AuthorityConfig, env: NodeJS.ProcessEnv): { apiServer: URL; caPem: string; readCa: () => string; token: () => string } | undefined {
  const k = config.kubernetes;
  if (!k) return undefined;
  let apiServer: URL;
  if (k.apiServer) apiServer = new URL(k.apiServer);
  else {
    const host = env.KUBERNETES_SERVICE_HOST?.trim();
    if (!host) throw new ConfigError(['kubernetes.apiServer: not set, and KUBERNETES_SERVICE_HOST is not set (not running in a pod?)']);
    const port = env.KUBERNETES_SERVICE_PORT?.trim() || '443';
    apiServer = new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`);
  }
  const caFile = k.caFile ?? IN_CLUSTER.caFile;
  const tokenFile = k.tokenFile ?? IN_CLUSTER.tokenFile;
  const token = secretReader({ file: tokenFile }, env, 'kubernetes.tokenFile');
  // Read once now, so a missing token fails the start rather than the first bootstrap.
  const own = audiencesOf(token());
  // Our own token is for the API server's audience: so is every pod's default
  // (automounted) token. Asking TokenReviews for that audience would let every app
  // container, not only leash, attest as its pod.
  if (own.includes(k.audience)) {
    throw new ConfigError([
      `kubernetes.audience: ${JSON.stringify(k.audience)} is the API server's own audience (the authority's service-account token is for it): every pod's default token would attest as its pod; use an audience of leash's own (default "leash", the one the injector projects)`,
    ]);
  }
  // The CA is read again before each review (a cluster CA rotation updates ca.crt in place).
  return { apiServer, caPem: readCaFile(caFile, 'kubernetes.caFile'), readCa: () => readText(caFile, 'kubernetes.caFile'), token };
}

/** The `aud` claim of a JWT, unverified (our own token, from the kubelet); none when it is not one. */
function audiencesOf(jwt: string): string[] {
  try {
    const aud = (JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { aud?: unknown }).aud;
    return (Array.isArray(aud) ? aud : [aud]).filter((a): a is string => typeof a === 'string');
  } catch {
    return [];
  }
}

export async function runAuthority(configPath: string, env: NodeJS.ProcessEnv): Promise<number> {
  const config = loadAuthorityConfig(configPath, env);
  const logger = createLogger({ level: config.log.level });
  const running = await createAuthority(authorityInputs(config, env, logger));
  const bind = <T>(p: Promise<T>, what: string, host: string, port: number, key: string): Promise<T> =>
    p.catch(async (err: unknown) => {
      await running.close();
      throw new ListenError(listenErrorMessage(err, what, host, port, `${key}: in ${configPath}`), {}, { cause: err });
    });
  const addr = await bind(running.server.listen(config.listen.host, config.listen.port), 'authority API', config.listen.host, config.listen.port, 'listen');
  const m = config.metrics.listen;
  const metricsAddr = m && running.metricsListener ? await bind(running.metricsListener.listen(m.host, m.port), 'authority metrics', m.host, m.port, 'metrics.listen') : undefined;
  logger.info(
    {
      listen: `${addr.address}:${addr.port}`,
      ...(metricsAddr ? { metrics: `${metricsAddr.address}:${metricsAddr.port}` } : {}),
      trustDomain: config.trustDomain,
      credentials: Object.keys(config.credentials),
    },
    'leash authority started',
  );
  await untilSignal(logger);
  await running.close();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  return 0;
}
