import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { deserialize, serialize } from 'node:v8';
import { ConfigError } from '../core/errors.js';
import { fromPlain, VALIDATE_ARG } from './plain.js';
import type { SidecarConfig } from './sidecar.js';
import type { ChildAnswer, ChildRequest } from './validate-child.js';

/**
 * parseConfig(sidecarSchema, …) in a short-lived child process: the same value and the same
 * ConfigError, but yaml, zod and the schemas (~12 MB resident once loaded) are never loaded
 * into the serving process. A child process, not a worker thread: a worker's exit left its
 * glibc malloc arena and the built-in sources it compiled resident in the serving process
 * (1.8 MB idle RSS, 3.4 MB with `--max-semi-space-size=1`; bench/rss-breakdown.md).
 * Request and answer cross its stdin and stdout as v8.serialize data (structured clone, as
 * a worker thread's message was). Resolves only after the child has exited.
 *
 * This module must import nothing that imports zod or yaml (test/integration/config-isolated.test.ts).
 */
export async function parseSidecarConfigIsolated(text: string, env: Readonly<Record<string, string | undefined>>, source: string): Promise<SidecarConfig> {
  const request: ChildRequest = { text, env: { ...env }, source };
  const child = spawn(process.execPath, ['--max-semi-space-size=1', fileURLToPath(new URL('./validate-child.js', import.meta.url)), VALIDATE_ARG], {
    // The env to expand travels on stdin; the child's own environment is empty, so no
    // NODE_OPTIONS preload (an APM agent, say) runs again there. stderr is not relayed: the
    // answer says what went wrong, and a crash's output could quote the config.
    env: {},
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => chunks.push(b));
  // A child that exits before reading all of stdin must not fail the write with EPIPE.
  child.stdin.on('error', () => undefined);
  child.stdin.end(serialize(request));
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve({ code: c, signal: s }));
  });
  const how = signal ? `signal ${signal}` : `exit code ${code}`;
  if (chunks.length === 0) throw new Error(`config validation ended without an answer (${how})`);
  let answer: ChildAnswer;
  try {
    answer = deserialize(Buffer.concat(chunks)) as ChildAnswer;
  } catch {
    throw new Error(`config validation gave an unreadable answer (${how})`);
  }
  if (answer.ok) return fromPlain<SidecarConfig>(answer.config);
  if ('issues' in answer) throw new ConfigError(answer.issues, answer.context);
  throw new Error(answer.unexpected);
}
