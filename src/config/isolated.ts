import { Worker } from 'node:worker_threads';
import { ConfigError } from '../core/errors.js';
import { fromPlain } from './plain.js';
import type { SidecarConfig } from './sidecar.js';
import type { WorkerAnswer, WorkerRequest } from './worker.js';

/**
 * parseConfig(sidecarSchema, …) in a short-lived worker thread: the same value and the same
 * ConfigError, but yaml, zod and the schemas (~12 MB resident once loaded) are never loaded
 * into the calling thread. Resolves only after the worker has exited, so its isolate is
 * gone before the caller goes on to serve (bench/RESULTS.md, "Idle and peak memory").
 *
 * This module must import nothing that imports zod or yaml (test/integration/config-isolated.test.ts).
 */
export async function parseSidecarConfigIsolated(text: string, env: Readonly<Record<string, string | undefined>>, source: string): Promise<SidecarConfig> {
  const request: WorkerRequest = { text, env: { ...env }, source };
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: { sidecarConfig: request },
    // A small young generation: validation allocates little and the process's peak is what counts.
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
    // The worker gets its env through workerData; its own process.env is left empty.
    env: {},
    // Not the process's node flags: a preload (--import/--require of an APM agent, say) is not run again there.
    execArgv: [],
  });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  let answer: WorkerAnswer | undefined;
  let failure: Error | undefined;
  worker.once('message', (m: WorkerAnswer) => (answer = m));
  worker.once('error', (e) => (failure = e));
  const code = await exited;
  if (failure) throw failure;
  if (!answer) throw new Error(`config validation ended without an answer (worker exit code ${code})`);
  if (answer.ok) return fromPlain<SidecarConfig>(answer.config);
  if ('issues' in answer) throw new ConfigError(answer.issues, answer.context);
  throw new Error(answer.unexpected);
}
