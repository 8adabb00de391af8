import { readFileSync, statSync } from 'node:fs';
import type { TlsSource } from '../core/tls-reload.js';
import { redisTargetFrom, type RedisTarget } from '../bus/target.js';
import type { RedisTargetConfig } from '../config/common.js';
import { parseSidecarConfigIsolated } from '../config/isolated.js';
import { isFileContents } from '../config/secret-shape.js';
import type { SidecarConfig } from '../config/sidecar.js';
import { ConfigError } from '../core/errors.js';
import { caBundleProblem } from '../core/ca-bundle.js';
import { packageVersion } from './version.js';

/**
 * Entry-point helpers: the only code that reads config and CA files from disk. Nothing here
 * loads yaml or zod (`leash sidecar` imports this module; bin/load.ts has the in-process
 * parsers for the other commands).
 */
export function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    // A path that is a file's contents (config/common.ts filePath) is not repeated, wherever it came from.
    const shown = isFileContents(path) ? 'the file named there' : path;
    throw new ConfigError([`${what}: cannot read ${shown} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
}

/** A CA bundle file (it replaces the system roots): one without a PEM certificate is refused (core/ca-bundle.ts). */
export function readCaFile(path: string, what: string): string {
  const text = readText(path, what);
  const problem = caBundleProblem(text, `${what}: ${path}`);
  if (problem) throw new ConfigError([problem]);
  return text;
}

export function readCaFiles(config: SidecarConfig): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, route] of Object.entries(config.routes)) {
    if (route.caFile && !out.has(route.caFile)) out.set(route.caFile, readCaFile(route.caFile, `routes.${name}.caFile`));
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
  return redisTargetFrom(
    target,
    (source) => {
      if ('file' in source) return readText(source.file, `${where}.password`).trim();
      const value = env[source.env];
      // Never a connection without the password the config names (it would fail as NOAUTH, far from the cause).
      if (value === undefined) throw new ConfigError([`${where}.password: environment variable ${source.env} is not set`]);
      return value;
    },
    // A file is read again at each reconnection (a rotated Secret); an environment variable cannot change.
    (source) => ('file' in source ? () => readText(source.file, `${where}.password`).trim() : undefined),
  );
}

/**
 * The sidecar's config from a file (a path) or an environment variable ({ env: NAME },
 * `--config-env`), validated in a child process that has exited when this resolves: the
 * same value and errors as loadSidecarConfig, without yaml and zod in this process.
 */
export async function loadSidecarConfigIsolated(source: string | { env: string }, env: NodeJS.ProcessEnv): Promise<SidecarConfig> {
  if (typeof source === 'string') return parseSidecarConfigIsolated(readText(source, '--config'), env, source);
  const text = env[source.env];
  if (text === undefined || text.trim() === '') throw new ConfigError([`--config-env ${source.env}: the environment variable is not set`]);
  try {
    return await parseSidecarConfigIsolated(text, env, `$${source.env}`);
  } catch (err) {
    // A config handed over in the environment is the injector's: a key this version does not
    // know is most likely one of a newer injector's. Still refused (ignoring it could drop a
    // restriction it carries), but said so, with what to do.
    if (err instanceof ConfigError && err.issues.some((l) => /: unknown key/.test(l))) {
      throw new ConfigError([
        ...err.issues,
        `this sidecar is leash ${packageVersion()}: a key it does not know in --config-env ${source.env} usually comes from a newer injector; set the injector's image: to a sidecar image of its own version or newer (docs/operations.md, "Upgrades")`,
      ]);
    }
    throw err;
  }
}

/**
 * A listener's TLS files as its reloader sees them (the injector's webhook, the authority's
 * `tls`). A Secret volume swaps a `..data` symlink, so stat follows links; inode, size and
 * mtime of both files change with every rotation.
 */
export function tlsFiles(certFile: string, keyFile: string): TlsSource {
  const id = (path: string) => {
    const s = statSync(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  };
  return {
    stamp: () => `${id(certFile)}|${id(keyFile)}`,
    read: () => ({ certPem: readText(certFile, 'tls.certFile'), keyPem: readText(keyFile, 'tls.keyFile') }),
  };
}
