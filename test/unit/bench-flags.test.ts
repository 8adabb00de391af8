import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IMAGE_NODE_FLAGS, leashNodeFlags, SHIPPED_CLI } from '../../bench/lib.js';

/**
 * The benches run leash with bench/lib.ts's IMAGE_NODE_FLAGS by default, to measure it as the
 * image runs it. Those flags and the Dockerfile's ENTRYPOINT must not drift apart.
 */
const ROOT = join(import.meta.dirname, '..', '..');

/** The last stage's ENTRYPOINT, exec form (comments dropped, continuation lines joined). */
function entrypoint(): string[] {
  const lines = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim());
  const lastFrom = lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  const entries = lines.slice(lastFrom).filter((l) => /^ENTRYPOINT\s/i.test(l));
  expect(entries.length, 'the runtime stage has an ENTRYPOINT').toBeGreaterThan(0);
  return JSON.parse(entries.at(-1)!.replace(/^ENTRYPOINT\s+/i, '')) as string[];
}

describe('bench node flags', () => {
  it("the Dockerfile's ENTRYPOINT runs node with exactly IMAGE_NODE_FLAGS before the cli", () => {
    const entry = entrypoint();
    expect(entry[0]).toBe('node');
    const script = entry.findIndex((a) => a.endsWith(`/${SHIPPED_CLI}`));
    expect(script, `ENTRYPOINT names ${SHIPPED_CLI}, the file the benches measure`).toBeGreaterThan(0);
    expect(entry.slice(1, script)).toEqual([...IMAGE_NODE_FLAGS]);
    // No node flag after the script either (those would be leash's arguments, not node's).
    expect(entry.slice(script + 1)).toEqual([]);
  });

  it('--leash-node-flags: the image flags by default, none when empty, the given words otherwise', () => {
    expect(leashNodeFlags([])).toEqual([...IMAGE_NODE_FLAGS]);
    expect(leashNodeFlags(['--quick', '--rounds=2'])).toEqual([...IMAGE_NODE_FLAGS]);
    expect(leashNodeFlags(['--leash-node-flags='])).toEqual([]);
    expect(leashNodeFlags(['--leash-node-flags=  '])).toEqual([]);
    expect(leashNodeFlags(['--leash-node-flags=--max-semi-space-size=64 --optimize-for-size'])).toEqual(['--max-semi-space-size=64', '--optimize-for-size']);
    expect(leashNodeFlags(['--leash-node-flags=--a', '--leash-node-flags=--b'])).toEqual(['--b']);
    expect(() => leashNodeFlags(['--leash-node-flags=cli.js'])).toThrow(/not a node flag/);
    expect(() => leashNodeFlags(['--leash-node-flags'])).toThrow(/needs a value/);
  });
});
