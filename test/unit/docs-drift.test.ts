import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { revokeRequest } from '../../src/bin/admin.js';
import { parseCommandLine } from '../../src/cli.js';
import { checkDocument } from '../../src/config/check-report.js';
import { readDocumentCollecting } from '../../src/config/load.js';
import { CLI, CLI_MISSING, writeTemp } from '../helpers/spawn.js';

/**
 * The docs must not drift from the code (CONTRIBUTING-style rules, stated here once):
 *
 * 1. Every `leash …` command line in a shell code block of README.md or docs/*.md is
 *    accepted by the CLI's own parser (src/cli.ts parseCommandLine): known command, known
 *    options, option values where needed. Shell blocks are those with info string `sh`,
 *    `bash`, `shell`, `zsh` or `console` (in `console` blocks only `$ ` lines are
 *    commands). `leash`, `npx leash` and `node dist/src/cli.js` all count; env
 *    assignments, `$(…)`, pipes, `&&`, `;`, comments and `\` continuations are handled.
 *    A usage synopsis (`[--json]`, `a | b`) is checked with its optional `[…]` parts
 *    dropped; one with alternatives left is skipped. Output blocks (no info string) are
 *    not commands.
 * 2. Every `yaml`/`yml` code block that is a leash config (sidecar, authority, dev or
 *    injector, told apart by its top-level keys as `leash check` does) passes the
 *    validation `leash check` does, short of reading the files it names: the schema, the
 *    checks across keys, the policy patterns, the lease names against the authority
 *    section (dev). A block that is
 *    deliberately a fragment or a wrong example is marked, either with the info string
 *    `yaml fragment` or with the line `<!-- not-a-config -->` just before the fence. The
 *    validation is `leash check`'s own (config/check-report.ts), and `leash check` is also
 *    run as a process on every such block and on every `examples/*.yaml` a command names.
 * 3. The CA is at one path, /etc/leash/ca/ca.pem, in the docs, the examples and
 *    deploy/README.md.
 */
const ROOT = process.cwd();
const FILES = ['README.md', ...readdirSync(join(ROOT, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => `docs/${f}`)];
const SHELL = new Set(['sh', 'bash', 'shell', 'zsh', 'console']);
const NOT_A_CONFIG = '<!-- not-a-config -->';

interface Block {
  file: string;
  line: number;
  info: string[];
  marked: boolean;
  text: string;
}

export function codeBlocks(file: string, markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const info = open[2]!.trim().split(/\s+/).filter(Boolean).map((w) => w.toLowerCase());
    let prev = i - 1;
    while (prev >= 0 && lines[prev]!.trim() === '') prev--;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
      if (close.test(lines[j]!)) break;
      body.push(lines[j]!);
    }
    blocks.push({ file, line: i + 1, info, marked: prev >= 0 && lines[prev]!.trim() === NOT_A_CONFIG, text: body.join('\n') });
    i = j;
  }
  return blocks;
}

/** Shell words of one command line: quotes removed, operators as separate words. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur: string | undefined;
  const push = () => {
    if (cur !== undefined) words.push(cur);
    cur = undefined;
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'" || c === '"') {
      const end = line.indexOf(c, i + 1);
      cur = (cur ?? '') + line.slice(i + 1, end === -1 ? line.length : end);
      i = end === -1 ? line.length : end;
    } else if (c === '#' && cur === undefined) {
      break; // a comment
    } else if (/\s/.test(c)) {
      push();
    } else if (line.startsWith('$(', i)) {
      push();
      words.push('$(');
      i++;
    } else if (c === '`' || c === ')' || c === ';' || c === '|' || c === '&' || c === '<' || c === '>') {
      push();
      let op = c;
      while (i + 1 < line.length && /[|&<>]/.test(line[i + 1]!)) op += line[++i];
      words.push(op);
    } else {
      cur = (cur ?? '') + c;
    }
  }
  push();
  return words;
}

const OPERATORS = new Set(['$(', '`', ')', ';', '|', '||', '&', '&&']);
const REDIRECT = /^[0-9]*[<>]/;

/** The argument lists of every leash invocation on one shell line. */
export function leashInvocations(line: string): string[][] {
  const words = shellWords(line);
  const out: string[][] = [];
  let segment: string[] = [];
  const flush = () => {
    let s = segment;
    segment = [];
    while (s.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(s[0]!)) s = s.slice(1); // VAR=value prefixes
    if (s[0] === 'npx' && s[1] === 'leash') out.push(s.slice(2));
    else if (s[0] === 'leash') out.push(s.slice(1));
    else if (s[0] === 'node' && s[1]?.endsWith('cli.js')) out.push(s.slice(2));
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (OPERATORS.has(w)) flush();
    else if (REDIRECT.test(w) || w === '2>&1') {
      if (/^[0-9]*[<>]+&?$/.test(w) && !w.endsWith('&')) i++; // `> file`: skip the file too
    } else segment.push(w);
  }
  flush();
  return out;
}

/** Command lines of a shell block: continuations joined, `$ ` prompts in console blocks. */
function commandLines(block: Block): Array<{ line: number; text: string }> {
  const console = block.info[0] === 'console';
  const out: Array<{ line: number; text: string }> = [];
  const raw = block.text.split('\n');
  for (let i = 0; i < raw.length; i++) {
    let text = raw[i]!;
    const start = block.line + 1 + i;
    if (console) {
      if (!text.startsWith('$ ')) continue;
      text = text.slice(2);
    }
    while (text.endsWith('\\') && i + 1 < raw.length) text = `${text.slice(0, -1)} ${raw[++i]!.replace(/^\$ /, '')}`;
    out.push({ line: start, text });
  }
  return out;
}

/** A usage synopsis: optional parts dropped; undefined if alternatives remain. */
function desynopsis(args: string[]): string[] | undefined {
  const text = args.join(' ');
  if (!/[[\]]|(^| )\|( |$)/.test(text)) return args;
  let t = text;
  for (let prev = ''; prev !== t; ) {
    prev = t;
    t = t.replace(/\[[^[\]]*\]/g, ' ');
  }
  if (/[[\]()]|(^| )\|( |$)/.test(t)) return undefined;
  return t.split(/\s+/).filter(Boolean);
}

/** Why argv is refused, or undefined when the CLI accepts it. */
function refusal(argv: string[]): string | undefined {
  try {
    const parsed = parseCommandLine(argv);
    if (parsed.kind !== 'run') return undefined;
    if (parsed.name === 'trace' && parsed.positionals.length !== 1) return 'leash trace takes exactly one value';
    if (parsed.name === 'revoke') revokeRequest(parsed.values as Parameters<typeof revokeRequest>[0]);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const blocks = FILES.flatMap((f) => codeBlocks(f, readFileSync(join(ROOT, f), 'utf8')));
/** Every leash invocation in a shell block, where it is. */
const lines = blocks
  .filter((b) => SHELL.has(b.info[0] ?? ''))
  .flatMap((b) => commandLines(b).map((l) => ({ where: `${b.file}:${l.line}`, text: l.text })))
  .flatMap((l) => leashInvocations(l.text).map((argv) => ({ ...l, argv })));
const yamlBlocks = blocks.filter((b) => ['yaml', 'yml'].includes(b.info[0] ?? ''));
/** The YAML blocks that are configs (not marked as fragments or wrong examples). */
const configs = yamlBlocks.filter((b) => !b.marked && !b.info.includes('fragment'));

describe('docs drift: leash command lines', () => {
  it('the extractor understands env prefixes, $(…), pipes, comments, prompts and synopses', () => {
    expect(leashInvocations('TOKEN=$(leash token create --identity a)    # printed alone')).toEqual([['token', 'create', '--identity', 'a']]);
    expect(leashInvocations('A=1 B="x y" node dist/src/cli.js leases --json | jq . > out.json 2>&1')).toEqual([['leases', '--json']]);
    expect(leashInvocations("npm ci && npx leash revoke --all --reason 'a b'")).toEqual([['revoke', '--all', '--reason', 'a b']]);
    expect(leashInvocations('echo leash dev; curl http://127.0.0.1:9090/status')).toEqual([]);
    expect(desynopsis(['dev', '[--config', 'FILE]', '[--redis', 'URL]'])).toEqual(['dev']);
    expect(desynopsis(['revoke', '--lease', 'ID', '|', '--all'])).toBeUndefined();
    // And the checker refuses what the CLI refuses.
    expect(refusal(['status', '--bogus'])).toMatch(/Unknown option '--bogus'/);
    expect(refusal(['frob'])).toMatch(/unknown command "frob"/);
    expect(refusal(['revoke', '--lease', 'x', '--all'])).toMatch(/exactly one/);
    expect(refusal(['trace'])).toMatch(/exactly one value/);
    expect(refusal(['status', '--json', '--admin', '127.0.0.1:9090'])).toBeUndefined();
  });

  it('finds the docs’ command lines (the extractor is not silently matching nothing)', () => {
    expect(lines.length).toBeGreaterThan(15);
    expect(new Set(lines.map((l) => l.argv[0])).size).toBeGreaterThanOrEqual(6);
  });

  it('every leash command line in README.md and docs/*.md is accepted by the CLI parser', () => {
    const bad = lines.flatMap(({ where, text, argv }) => {
      const args = desynopsis(argv);
      if (!args) return [];
      const why = refusal(args);
      return why ? [`${where}: ${text.trim()}\n    → ${why}`] : [];
    });
    expect(bad, bad.join('\n')).toEqual([]);
  });
});

/**
 * The problems `leash check` reports for a document, short of reading the files it names:
 * the same collecting validator (config/check-report.ts checkDocument, which src/bin/check.ts
 * runs), kind told the same way. The process test below runs `leash check` itself.
 */
function checkProblems(text: string, where: string): string[] {
  const { doc, problems } = readDocumentCollecting(text, {}, where);
  return checkDocument(doc, problems).problems;
}

describe('docs drift: YAML configs', () => {

  it('finds YAML blocks, and every unmarked one is a config leash accepts', () => {
    expect(yamlBlocks.length).toBeGreaterThan(0);
    expect(configs.length).toBeGreaterThanOrEqual(4);
    const bad = configs.flatMap((b) => {
      let problems: string[];
      try {
        problems = checkProblems(b.text, `${b.file}:${b.line}`);
      } catch (e) {
        const err = e as Error & { issues?: string[] };
        problems = err.issues ?? [err.message];
      }
      return problems.length ? [`${b.file}:${b.line}: ${problems.join('; ')}\n    (a deliberate fragment or wrong example: use \`\`\`yaml fragment, or put ${NOT_A_CONFIG} before it)`] : [];
    });
    expect(bad, bad.join('\n')).toEqual([]);
  });

  it('the checker refuses what leash check refuses', () => {
    expect(checkProblems('credentails: {}\npolicies: []\n', 't')).toContain('credentails: unknown key; did you mean "credentials"?');
    expect(checkProblems('routes: { a: { upstream: x, credential: { env: A }, inject: { header: a }, allow: ["GET /"] } }\n', 't').join('\n')).toMatch(/routes\.a\.upstream/);
  });
});

/**
 * As processes: `leash check` itself on every unmarked YAML block, and on every example file
 * a command line of the docs names with --config (they are what a newcomer runs first).
 */
describe('docs drift: leash check as a process', () => {
  const check = (path: string) => spawnSync(process.execPath, [CLI, 'check', '--config', path], { cwd: ROOT, env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8', timeout: 20_000 });
  const named = [...new Set(lines.flatMap(({ argv }) => argv.flatMap((a, i) => (argv[i - 1] === '--config' || argv[i - 1] === '-c') && /^examples\/[\w.-]+\.ya?ml$/.test(a) ? [a] : [])))].sort();

  it('every example file a docs command names with --config: exit 0, "valid"', () => {
    expect(existsSync(CLI), CLI_MISSING).toBe(true);
    expect(named).toEqual(expect.arrayContaining(['examples/authority.yaml', 'examples/dev.yaml', 'examples/sidecar.yaml', 'examples/sidecar-leased.yaml']));
    const bad = named.flatMap((f) => {
      const r = check(f);
      return r.status === 0 && r.stdout.startsWith(`config ${f}: valid (`) ? [] : [`${f}: exit ${r.status}\n${r.stderr}`];
    });
    expect(bad, bad.join('\n')).toEqual([]);
  }, 60_000);

  it('every unmarked YAML block: exit 0, "valid"', () => {
    const bad = configs.flatMap((b) => {
      const r = check(writeTemp(`${b.file.replace(/\W/g, '-')}-${b.line}.yaml`, b.text));
      return r.status === 0 && /: valid \(/.test(r.stdout) ? [] : [`${b.file}:${b.line}: exit ${r.status}\n${r.stderr}`];
    });
    expect(bad, bad.join('\n')).toEqual([]);
  }, 60_000);
});

describe('docs drift: one CA path', () => {
  it('the CA is /etc/leash/ca/ca.pem (and its key ca-key.pem beside it) wherever a doc or example names a file under /etc/leash', () => {
    const files = [...FILES, ...readdirSync(join(ROOT, 'examples')).filter((f) => /\.ya?ml$/.test(f)).map((f) => `examples/${f}`), 'deploy/README.md'];
    const bad = files.flatMap((f) =>
      readFileSync(join(ROOT, f), 'utf8')
        .split('\n')
        .flatMap((line, i) => (/\/etc\/leash\/ca(-key)?\.pem/.test(line) ? [`${f}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(bad, bad.join('\n')).toEqual([]);
  });
});
