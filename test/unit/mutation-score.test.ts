import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * scripts/mutation-score.mjs: the full scope's score is the sum of parts measured in
 * different sessions (docs/testing.md), so the sum must count as Stryker does, keep every
 * undetected mutant, and say when a part is missing or its code changed since.
 */
const SCRIPT = join(process.cwd(), 'scripts/mutation-score.mjs');

function project(): string {
  const dir = mkdtempSync(join(tmpdir(), 'leash-mutscore-'));
  copyFileSync(join(process.cwd(), 'stryker.config.mjs'), join(dir, 'stryker.config.mjs'));
  mkdirSync(join(dir, 'src/bus'), { recursive: true });
  mkdirSync(join(dir, 'reports/mutation'), { recursive: true });
  return dir;
}
const run = (dir: string, ...args: string[]) => execFileSync(process.execPath, [SCRIPT, ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const SOURCE = 'export function f(a: number) {\n  return a > 1 ? "big" : "small";\n}\n';
const mutant = (id: string, status: string, mutatorName = 'EqualityOperator', replacement = 'a >= 1') => ({
  id,
  mutatorName,
  replacement,
  status,
  location: { start: { line: 2, column: 10 }, end: { line: 2, column: 15 } },
});

function writeReport(dir: string): void {
  writeFileSync(join(dir, 'src/bus/x.ts'), SOURCE);
  const report = {
    schemaVersion: '2',
    projectRoot: dir,
    files: {
      'src/bus/x.ts': {
        language: 'typescript',
        source: SOURCE,
        mutants: [mutant('1', 'Killed'), mutant('2', 'Killed'), mutant('3', 'Timeout'), mutant('4', 'Survived'), mutant('5', 'NoCoverage', 'StringLiteral', '""'), mutant('6', 'Ignored'), mutant('7', 'RuntimeError')],
      },
    },
  };
  writeFileSync(join(dir, 'reports/mutation/part-core.json'), JSON.stringify(report));
  writeFileSync(join(dir, 'reports/mutation/part-core.meta.json'), JSON.stringify({ measuredAt: '2026-11-28T01:01:48Z', durationSeconds: 3666, concurrency: 8, commit: 'abc1234', uncommittedSources: 0 }));
}

describe('mutation-score', () => {
  it('records a part: counts by status, every undetected mutant with its text, the commit measured', () => {
    const dir = project();
    writeReport(dir);
    run(dir, 'record', 'part-core');
    const rec = JSON.parse(readFileSync(join(dir, 'docs/mutation/part-core.json'), 'utf8'));
    expect(rec).toMatchObject({ part: 'part-core', commit: 'abc1234', uncommittedSources: 0, durationSeconds: 3666, concurrency: 8 });
    expect(rec.files['src/bus/x.ts']).toMatchObject({ mutants: 7, killed: 2, timeout: 1, survived: 1, noCoverage: 1, ignored: 1, errors: 1 });
    expect(rec.files['src/bus/x.ts'].undetected).toEqual([
      { file: 'src/bus/x.ts', line: 2, mutator: 'EqualityOperator', original: 'a > 1', replacement: 'a >= 1' },
      { file: 'src/bus/x.ts', line: 2, mutator: 'StringLiteral (no coverage)', original: 'a > 1', replacement: '""' },
    ]);
  });

  it('scores as Stryker does (timeouts detected; ignored and errors left out) and names the parts not measured', () => {
    const dir = project();
    writeReport(dir);
    run(dir, 'record', 'part-core');
    const out = run(dir);
    // detected 3 of 5 counted; of the covered, 3 of 4
    expect(out).toContain('| **all** | | 7 | 2 | 1 | 1 | 1 | **60.0 % / 75.0 %** | |');
    expect(out).toMatch(/parts not measured: part-credentials, part-proxy-request, part-proxy-io/);
    expect(out).not.toMatch(/changed since/);
  });

  it('flags a file whose code changed after its part was measured', () => {
    const dir = project();
    writeReport(dir);
    run(dir, 'record', 'part-core');
    writeFileSync(join(dir, 'src/bus/x.ts'), SOURCE.replace('> 1', '> 2'));
    const out = run(dir);
    expect(out).toMatch(/`src\/bus\/x.ts` .*\| changed since \|/);
    expect(out).toMatch(/changed since measured: src\/bus\/x.ts/);
  });

  it('refuses a part the config does not define', () => {
    const dir = project();
    expect(() => run(dir, 'record', 'part-nope')).toThrow(/unknown part "part-nope"/);
  });
});
