import { deserialize, serialize } from 'node:v8';
import { ConfigError } from '../core/errors.js';
import { parseConfig } from './load.js';
import { toPlain, VALIDATE_ARG } from './plain.js';
import { sidecarSchema } from './sidecar.js';

/**
 * The process that validates a sidecar config (config/isolated.ts starts it with
 * VALIDATE_ARG): yaml, zod and the schemas are loaded here and leave with this process, so
 * the serving process never holds them. It reads one request on stdin, writes one answer on
 * stdout (v8.serialize), and ends.
 */
export interface ChildRequest {
  text: string;
  env: Record<string, string | undefined>;
  source: string;
}

export type ChildAnswer =
  | { ok: true; config: ReturnType<typeof toPlain> }
  | { ok: false; issues: string[]; context: ConfigError['context'] }
  | { ok: false; unexpected: string };

/** The answer to one request: the plain config, or the error as data. */
export function validateSidecarConfig({ text, env, source }: ChildRequest): ChildAnswer {
  try {
    return { ok: true, config: toPlain(parseConfig(sidecarSchema, text, env, source)) };
  } catch (e) {
    return e instanceof ConfigError ? { ok: false, issues: [...e.issues], context: e.context } : { ok: false, unexpected: (e as Error)?.message ?? String(e) };
  }
}

if (process.argv[2] === VALIDATE_ARG) {
  const chunks: Buffer[] = [];
  process.stdin.on('data', (b: Buffer) => chunks.push(b));
  process.stdin.on('end', () => {
    let answer: ChildAnswer;
    try {
      answer = validateSidecarConfig(deserialize(Buffer.concat(chunks)) as ChildRequest);
    } catch (e) {
      answer = { ok: false, unexpected: `unreadable request: ${(e as Error)?.message ?? String(e)}` };
    }
    process.stdout.write(serialize(answer));
  });
}
