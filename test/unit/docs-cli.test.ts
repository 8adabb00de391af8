import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandOptions, parseCommandLine } from '../../src/cli.js';

/**
 * The command line's reference must not drift from the parser (src/cli.ts):
 *
 * - every option of every command is in that command's `--help`, and in the docs in a
 *   section (between two headings) that names the command (`leash revoke … --actor`);
 * - every inline `leash …` command in the docs' prose (code blocks are docs-drift.test.ts's)
 *   is accepted by the parser: known command, known options. A synopsis (`[--json]`,
 *   `a | b`, upper-case placeholders) is checked with its optional parts dropped.
 */
const ROOT = process.cwd();
const FILES = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const texts = FILES.map((f) => ({ file: f, text: readFileSync(join(ROOT, f), 'utf8') }));

/** The prose of a markdown file: fenced blocks blanked (line numbers kept). */
function prose(text: string): string[] {
  let fence: string | undefined;
  return text.split('\n').map((l) => {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(l);
    if (m && (!fence || m[1]!.startsWith(fence))) {
      fence = fence ? undefined : m[1]!;
      return '';
    }
    return fence ? '' : l;
  });
}

const helpOf = (command: string): string => {
  const parsed = parseCommandLine([...command.split(' '), '--help']);
  if (parsed.kind !== 'command-help') throw new Error(`no help for ${command}`);
  return parsed.help;
};

describe('docs drift: command-line options', () => {
  const options = commandOptions();

  it('knows every command', () => {
    expect(Object.keys(options).sort()).toEqual(['authority', 'check', 'dev', 'injector', 'leases', 'revoke', 'scopes', 'sidecar', 'status', 'token create', 'trace']);
  });

  it("every option is in its command's --help", () => {
    const missing = Object.entries(options).flatMap(([c, opts]) => opts.filter((o) => !new RegExp(`${o}\\b`).test(helpOf(c))).map((o) => `leash ${c} ${o}`));
    expect(missing).toEqual([]);
  });

  it('every option is in the docs, in a section (between headings) naming its command', () => {
    const sections = texts.flatMap(({ text }) => text.split(/\n(?=#{1,6} )/));
    const missing = Object.entries(options).flatMap(([c, opts]) =>
      opts.filter((o) => !sections.some((s) => s.includes(`leash ${c}`) && new RegExp(`${o}(?![a-z-])`).test(s))).map((o) => `leash ${c} ${o}`),
    );
    expect(missing).toEqual([]);
  });
});

/** A synopsis's optional parts and placeholders dropped; undefined if alternatives are left. */
function desynopsis(words: string[]): string[] | undefined {
  let t = words.join(' ');
  for (let prev = ''; prev !== t; ) {
    prev = t;
    t = t.replace(/\[[^[\]]*\]/g, ' ');
  }
  if (/[[\]()]|(^| )\|( |$)/.test(t)) return undefined;
  return t.split(/\s+/).filter(Boolean);
}

describe('docs drift: inline leash commands', () => {
  const spans = texts.flatMap(({ file, text }) =>
    prose(text).flatMap((line, i) =>
      [...line.matchAll(/`(?:npx )?leash ([a-z][^`]*)`/g)].map((m) => ({ where: `${file}:${i + 1}`, text: m[1]!.trim() })),
    ),
  );

  it('finds them', () => {
    expect(spans.length).toBeGreaterThan(50);
  });

  it('every inline `leash …` in the prose is accepted by the parser', () => {
    const bad = spans.flatMap(({ where, text }) => {
      // `leash trace SECRET | FINGERPRINT | -`, `leash dev --config`: alternatives and option names alone.
      const words = desynopsis(text.split(/\s+/));
      if (!words) return [];
      // An option named without its value (`leash check --strict`, `leash sidecar --config`) is fine: only the names are checked.
      try {
        const command = words[0] === 'token' ? 'token create' : words[0]!;
        const known = commandOptions()[command];
        if (!known) {
          parseCommandLine(words); // an unknown command: its error
          return [];
        }
        const unknown = words.filter((w) => w.startsWith('--')).map((w) => w.replace(/=.*$/, '')).filter((w) => !known.includes(w) && w !== '--help');
        return unknown.length ? [`${where}: leash ${text} → unknown option ${unknown.join(', ')}`] : [];
      } catch (e) {
        return [`${where}: leash ${text} → ${(e as Error).message}`];
      }
    });
    expect(bad, bad.join('\n')).toEqual([]);
  });
});
