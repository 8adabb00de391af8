import { existsSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import type { SecretSource } from '../config/common.js';
import type { SidecarConfig } from '../config/sidecar.js';

/**
 * Warnings about how a sidecar's secrets and admin listener are exposed on this host,
 * shared by `leash check` and `leash sidecar` at start. Here, with the entry points,
 * because it looks at files (STYLE 3). Warnings, not errors: a Kubernetes secret volume is
 * 0644 unless `defaultMode` says otherwise, and refusing to start over it helps nobody.
 */
export function sidecarHygieneWarnings(config: SidecarConfig, platform: NodeJS.Platform = process.platform): string[] {
  const warnings: string[] = [];
  if (!isLoopback(config.admin.host)) {
    warnings.push(`admin ${config.admin.host}:${config.admin.port}: the admin listener (/status, /metrics) is reachable beyond this host; bind it to 127.0.0.1 unless a scraper needs it`);
  }
  const files: Array<[string, string]> = [];
  for (const [name, r] of Object.entries(config.routes)) {
    if (typeof r.credential === 'object' && 'file' in r.credential) files.push([`routes.${name}.credential`, r.credential.file]);
  }
  const jt = config.authority?.bootstrap.joinToken;
  if (jt && 'file' in jt) files.push(['authority.bootstrap.joinToken', jt.file]);
  for (const [where, path] of files) warnings.push(...fileModeWarnings(where, path, platform));
  return warnings;
}

/** A secret file readable or writable by group/others (same wording for every kind of file). */
export function fileModeWarnings(where: string, path: string, platform: NodeJS.Platform = process.platform): string[] {
  // POSIX permission bits mean nothing on Windows.
  if (platform === 'win32') return [];
  const mode = fileMode(path);
  if (mode === undefined || (mode & 0o077) === 0) return [];
  return [`${where}: file ${path} is readable or writable by group/others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`];
}

/**
 * A secret source that yields nothing here: an unset variable or a missing file. A warning,
 * not an error: the file is often checked on a machine (CI) other than where it runs. One
 * wording for sidecar, authority and dev files alike; `effect` adds what else follows.
 */
export function absentSecretWarnings(where: string, source: SecretSource, env: NodeJS.ProcessEnv, effect = ''): string[] {
  if ('env' in source) return env[source.env] ? [] : [`${where}: environment variable ${source.env} is not set; this secret is unavailable until it is${effect}`];
  return existsSync(source.file) ? [] : [`${where}: file ${source.file} does not exist yet; this secret is unavailable until it does${effect}`];
}

/** Both of the above for one secret source. */
export function secretSourceWarnings(where: string, source: SecretSource, env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform, effect = ''): string[] {
  return [...absentSecretWarnings(where, source, env, effect), ...('file' in source ? fileModeWarnings(where, source.file, platform) : [])];
}

/** 127.0.0.0/8, ::1 (and its v4-mapped form) and localhost. Anything else, 0.0.0.0 and :: included, is not. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

function fileMode(path: string): number | undefined {
  try {
    return statSync(path).mode;
  } catch {
    return undefined; // a missing file is warned about separately
  }
}
