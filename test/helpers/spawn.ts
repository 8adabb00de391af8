import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
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

export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

export function writeTemp(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'leash-test-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

export function spawnLeash(args: string[], env: Record<string, string> = {}): Spawned {
  const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
