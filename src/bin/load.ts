import { readFileSync } from 'node:fs';
import { parseConfig } from '../config/load.js';
import { sidecarSchema, type SidecarConfig } from '../config/sidecar.js';
import type { RedisTarget } from '../bus/connect.js';
import type { RedisTargetConfig } from '../config/common.js';
import { ConfigError } from '../core/errors.js';

/** Entry-point helpers: the only code that reads config and CA files from disk. */
export function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${what}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
}

export function loadSidecarConfig(path: string, env: NodeJS.ProcessEnv): SidecarConfig {
  return parseConfig(sidecarSchema, readText(path, '--config'), env, path);
}

/** `leash sidecar --config-env NAME`: the config's YAML in an environment variable (set by leash injector). */
export function loadSidecarConfigFromEnv(name: string, env: NodeJS.ProcessEnv): SidecarConfig {
  const text = env[name];
  if (text === undefined || text.trim() === '') throw new ConfigError([`--config-env ${name}: the environment variable is not set`]);
  return parseConfig(sidecarSchema, text, env, `$${name}`);
}

export function readCaFiles(config: SidecarConfig): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, route] of Object.entries(config.routes)) {
    if (route.caFile && !out.has(route.caFile)) out.set(route.caFile, readText(route.caFile, `routes.${name}.caFile`));
  }
  return out;
}

/** The join token, read when bootstrap asks for it (a Kubernetes-mounted file may appear late). */
export function joinTokenReader(config: SidecarConfig, env: NodeJS.ProcessEnv): (() => string | undefined) | undefined {
  const source = config.authority?.bootstrap.joinToken;
  if (!source) return undefined;
  if ('env' in source) return () => env[source.env]?.trim() || undefined;
  return () => {
    try {
      return readFileSync(source.file, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };
}

/**
 * The evidence the configured attestor presents, as a reader called for every bootstrap:
 * the join token, or the projected Kubernetes token (the kubelet replaces that file as it
 * rotates the token, so it is never cached). Undefined while the file is absent or empty.
 */
export function bootstrapTokenReader(config: SidecarConfig, env: NodeJS.ProcessEnv): (() => string | undefined) | undefined {
  const k = config.authority?.bootstrap.kubernetes;
  if (!k) return joinTokenReader(config, env);
  return () => {
    try {
      return readFileSync(k.tokenFile, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  };
}

/** A Redis target from config with its password source read now (the entry point reads secrets). */
export function resolveRedisTarget(target: RedisTargetConfig, env: NodeJS.ProcessEnv, where: string): RedisTarget {
  if (typeof target === 'string') return target;
  const pw = target.password;
  const password = pw === undefined ? undefined : 'env' in pw ? env[pw.env] : readText(pw.file, `${where}.password`).trim();
  return 'sentinels' in target ? { sentinels: target.sentinels, name: target.name, password } : { cluster: target.cluster, password };
}
