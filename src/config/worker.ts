import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ConfigError } from '../core/errors.js';
import { parseConfig } from './load.js';
import { toPlain } from './plain.js';
import { sidecarSchema } from './sidecar.js';

/**
 * The thread that validates a sidecar config (config/isolated.ts starts it): yaml, zod and
 * the schemas are loaded here, and go with this thread's isolate when it exits, so the
 * serving thread never holds them. It answers with one message and ends.
 */
export interface WorkerRequest {
  text: string;
  env: Record<string, string | undefined>;
  source: string;
}

export type WorkerAnswer =
  | { ok: true; config: ReturnType<typeof toPlain> }
  | { ok: false; issues: string[]; context: ConfigError['context'] }
  | { ok: false; unexpected: string };

/** The answer to one request: the plain config, or the error as data. */
export function validateSidecarConfig({ text, env, source }: WorkerRequest): WorkerAnswer {
  try {
    return { ok: true, config: toPlain(parseConfig(sidecarSchema, text, env, source)) };
  } catch (e) {
    return e instanceof ConfigError ? { ok: false, issues: [...e.issues], context: e.context } : { ok: false, unexpected: (e as Error)?.message ?? String(e) };
  }
}

// Started as the worker: answer and end. Imported anywhere else (a test, the image check), nothing runs.
const request = (workerData as { sidecarConfig?: WorkerRequest } | null)?.sidecarConfig;
if (!isMainThread && parentPort && request) parentPort.postMessage(validateSidecarConfig(request));
