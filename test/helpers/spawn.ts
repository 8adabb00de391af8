import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A leash process spawned from the built CLI, with its stdout lines captured. */
export interface Spawned {
  child: ChildProcess;
  lines: string[];
  stderr: string[];
  exit: Promise<number | null>;
  waitFor(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/**
 * The shipped command line: the bundle `npm run build` writes (rolldown.config.mjs), what the
 * package's `bin` and the image's ENTRYPOINT run. Every test that runs leash as a process
 * runs this file, so the bundle is what they test.
 */
export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'leash', 'cli.js');
/** What a test that needs CLI says when it is missing. */
export const CLI_MISSING = 'dist/leash/cli.js missing: run `npm run build` first';

export function writeTemp(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'leash-test-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/**
 * `node CLI ARGS` run to its end (15 s at most), with only PATH and `env` in its
 * environment; `opts.cli` runs another copy of the CLI, `opts.cwd` sets its directory.
 * Throws CLI_MISSING when the CLI has not been built.
 */
export function runLeash(args: string[], env: Record<string, string> = {}, opts: { cli?: string; cwd?: string } = {}): SpawnSyncReturns<string> {
  const cli = opts.cli ?? CLI;
  if (!existsSync(cli)) throw new Error(cli === CLI ? CLI_MISSING : `${cli} missing`);
  return spawnSync(process.execPath, [cli, ...args], { cwd: opts.cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, timeout: 15_000 });
}

/** `node CLI ARGS` with only PATH and `env` in its environment; `opts.cli` runs another copy of the CLI, `opts.cwd` sets its directory. */
export function spawnLeash(args: string[], env: Record<string, string> = {}, opts: { cli?: string; cwd?: string } = {}): Spawned {
  const child = spawn(process.execPath, [opts.cli ?? CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString('utf8')));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const parsed = () =>
    lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  const waitFor = (pred: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a log line; got:\n${lines.join('\n')}\n${stderr.join('')}`)), timeoutMs);
      const check = () => {
        const hit = parsed().find(pred);
        if (hit) {
          clearTimeout(timer);
          resolve(hit);
        } else waiters.push(check);
      };
      check();
      void exit.then(() => setTimeout(check, 50));
    });
  return { child, lines, stderr, exit, waitFor };
}
