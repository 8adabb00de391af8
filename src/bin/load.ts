import { parseConfig } from '../config/load.js';
import { sidecarSchema, type SidecarConfig } from '../config/sidecar.js';
import { readText } from './files.js';

export { bootstrapTokenReader, joinTokenReader, loadSidecarConfigIsolated, readCaFile, readCaFiles, readText, resolveRedisTarget } from './files.js';

/**
 * The sidecar config parsed in this thread, for commands that load the schemas anyway or
 * exit soon (leash scopes). `leash sidecar` uses files.ts loadSidecarConfigIsolated.
 */
export function loadSidecarConfig(path: string, env: NodeJS.ProcessEnv): SidecarConfig {
  return parseConfig(sidecarSchema, readText(path, '--config'), env, path);
}
