import { readFileSync } from 'node:fs';
import { parseConfig } from '../config/load.js';
import { sidecarSchema, type SidecarConfig } from '../config/sidecar.js';
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
