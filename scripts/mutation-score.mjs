#!/usr/bin/env node
// @ts-check
/**
 * The full-scope mutation score, from runs made in parts (stryker.config.mjs PARTS,
 * docs/testing.md). A part's run writes reports/mutation/<part>.json (not committed: it holds
 * every source); `record` keeps what the score needs in docs/mutation/<part>.json (committed):
 * counts per file, every surviving and uncovered mutant, and each file's content hash, so a
 * part measured on code that has changed since is reported as stale rather than summed as if
 * it were current.
 *
 *   node scripts/mutation-score.mjs record part-bus   # after LEASH_MUTATE=part-bus npm run mutate
 *   node scripts/mutation-score.mjs                   # the table over every recorded part
 *   node scripts/mutation-score.mjs --survivors       # and every survivor, by file
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = process.cwd();
const RECORDS = join(ROOT, 'docs/mutation');
/** Stryker's undetected statuses; Killed and Timeout are detected, the rest (Ignored, errors) not counted. */
const UNDETECTED = new Set(['Survived', 'NoCoverage']);
/** The parts stryker.config.mjs defines. */
const { PARTS } = /** @type {{ PARTS: Record<string, string[]> }} */ (await import(pathToFileURL(join(ROOT, 'stryker.config.mjs')).href));

/** @param {string} text */
const hash = (text) => createHash('sha256').update(text).digest('hex').slice(0, 16);

/**
 * @typedef {{ line: number, column: number }} Position
 * @typedef {{ id: string, mutatorName: string, replacement?: string, location: { start: Position, end: Position }, status: string }} Mutant
 * @typedef {{ file: string, line: number, mutator: string, original: string, replacement: string }} Undetected
 * @typedef {{ mutants: number, killed: number, timeout: number, survived: number, noCoverage: number, ignored: number, errors: number, sha: string, undetected: Undetected[] }} FileRecord
 * @typedef {{ part: string, commit: string, uncommittedSources: number | null, measuredAt: string, durationSeconds: number | null, concurrency: number | null, files: Record<string, FileRecord> }} PartRecord
 */

/** The text a mutant replaced, on one line and cut short. @param {string} source @param {Mutant['location']} loc */
function originalText(source, loc) {
  const lines = source.split('\n');
  const start = lines[loc.start.line - 1] ?? '';
  const text = loc.start.line === loc.end.line ? start.slice(loc.start.column - 1, loc.end.column - 1) : `${start.slice(loc.start.column - 1)} …`;
  return short(text);
}
/** @param {string} text */
function short(text) {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 100 ? `${one.slice(0, 99)}…` : one;
}

/** @param {string} part */
function record(part) {
  if (!(part in PARTS)) throw new Error(`unknown part "${part}": one of ${Object.keys(PARTS).join(', ')}`);
  const reportPath = join(ROOT, 'reports/mutation', `${part}.json`);
  if (!existsSync(reportPath)) throw new Error(`${relative(ROOT, reportPath)} is missing: run LEASH_MUTATE=${part} npm run mutate first`);
  const report = JSON.parse(readFileSync(reportPath, 'utf8'));
  /** @type {Record<string, FileRecord>} */
  const files = {};
  for (const [name, file] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
    const rel = relative(ROOT, join(report.projectRoot ?? ROOT, name));
    /** @type {FileRecord} */
    const rec = { mutants: 0, killed: 0, timeout: 0, survived: 0, noCoverage: 0, ignored: 0, errors: 0, sha: hash(file.source), undetected: [] };
    for (const m of /** @type {Mutant[]} */ (file.mutants)) {
      rec.mutants++;
      if (m.status === 'Killed') rec.killed++;
      else if (m.status === 'Timeout') rec.timeout++;
      else if (m.status === 'Survived') rec.survived++;
      else if (m.status === 'NoCoverage') rec.noCoverage++;
      else if (m.status === 'Ignored') rec.ignored++;
      else rec.errors++;
      if (UNDETECTED.has(m.status)) {
        rec.undetected.push({ file: rel, line: m.location.start.line, mutator: `${m.mutatorName}${m.status === 'NoCoverage' ? ' (no coverage)' : ''}`, original: originalText(file.source, m.location), replacement: short(m.replacement ?? '') });
      }
    }
    rec.undetected.sort((a, b) => a.line - b.line);
    files[rel] = rec;
  }
  const meta = (() => {
    try {
      return JSON.parse(readFileSync(join(ROOT, 'reports/mutation', `${part}.meta.json`), 'utf8'));
    } catch {
      return {};
    }
  })();
  /** @type {PartRecord} */
  const out = {
    part,
    commit: meta.commit ?? execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim(),
    // Source files that differed from that commit when the run began (the per-file hashes say which code was measured).
    uncommittedSources: meta.uncommittedSources ?? null,
    measuredAt: meta.measuredAt ?? new Date().toISOString(),
    durationSeconds: meta.durationSeconds ?? null,
    concurrency: meta.concurrency ?? null,
    files,
  };
  mkdirSync(RECORDS, { recursive: true });
  writeFileSync(join(RECORDS, `${part}.json`), `${JSON.stringify(out, null, 1)}\n`);
  console.log(`recorded ${part}: ${Object.keys(files).length} files → ${relative(ROOT, join(RECORDS, `${part}.json`))}`);
}

/** @param {Pick<FileRecord, 'killed' | 'timeout' | 'survived' | 'noCoverage'>} r */
function score(r) {
  const detected = r.killed + r.timeout;
  const total = detected + r.survived + r.noCoverage;
  const covered = detected + r.survived;
  const pct = (/** @type {number} */ n, /** @type {number} */ d) => (d === 0 ? 'n/a' : `${((100 * n) / d).toFixed(1)} %`);
  return `${pct(detected, total)} / ${pct(detected, covered)}`;
}

function summary(withSurvivors = false) {
  /** @type {PartRecord[]} */
  const parts = existsSync(RECORDS)
    ? readdirSync(RECORDS)
        .filter((f) => f.endsWith('.json'))
        .map((f) => JSON.parse(readFileSync(join(RECORDS, f), 'utf8')))
    : [];
  const missing = Object.keys(PARTS).filter((p) => !parts.some((r) => r.part === p));
  const total = { killed: 0, timeout: 0, survived: 0, noCoverage: 0, mutants: 0 };
  const rows = ['| Part | File | Mutants | Killed | Timeout | Survived | No coverage | Score (total / covered) | |', '|---|---|---|---|---|---|---|---|---|'];
  /** @type {string[]} */
  const stale = [];
  for (const part of parts.sort((a, b) => a.part.localeCompare(b.part))) {
    for (const [file, r] of Object.entries(part.files)) {
      const now = existsSync(join(ROOT, file)) ? hash(readFileSync(join(ROOT, file), 'utf8')) : 'gone';
      const isStale = now !== r.sha;
      if (isStale) stale.push(file);
      for (const k of /** @type {const} */ (['killed', 'timeout', 'survived', 'noCoverage'])) total[k] += r[k];
      total.mutants += r.mutants;
      rows.push(`| ${part.part} | \`${file}\` | ${r.mutants} | ${r.killed} | ${r.timeout} | ${r.survived} | ${r.noCoverage} | ${score(r)} | ${isStale ? 'changed since' : ''} |`);
    }
  }
  rows.push(`| **all** | | ${total.mutants} | ${total.killed} | ${total.timeout} | ${total.survived} | ${total.noCoverage} | **${score(total)}** | |`);
  console.log(rows.join('\n'));
  console.log('');
  console.log(`parts recorded: ${parts.map((p) => `${p.part} (${p.commit}, ${p.measuredAt.slice(0, 10)})`).join(', ') || 'none'}`);
  if (missing.length > 0) console.log(`parts not measured: ${missing.join(', ')} — the score above is not the full scope's`);
  if (stale.length > 0) console.log(`changed since measured: ${stale.join(', ')}`);
  if (withSurvivors) {
    for (const part of parts) {
      for (const r of Object.values(part.files)) {
        for (const u of r.undetected) console.log(`${u.file}:${u.line}  ${u.mutator}  ${u.original}  →  ${u.replacement}`);
      }
    }
  }
}

const [cmd, arg] = process.argv.slice(2);
if (cmd === 'record') {
  if (!arg) throw new Error('usage: mutation-score.mjs record <part>');
  record(arg);
} else summary(cmd === '--survivors');
