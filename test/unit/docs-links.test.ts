import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Every relative link in README.md, CHANGELOG.md, docs/*.md, deploy/README.md and
 * examples' READMEs points at a file or directory that exists, and a `#fragment` at a
 * heading of the target file (GitHub's anchors: lower-cased, punctuation dropped, spaces
 * as `-`, a repeated heading suffixed `-1`, `-2`, …). Code blocks and inline code are not
 * links.
 */
const ROOT = process.cwd();
const FILES = [
  'README.md',
  'CHANGELOG.md',
  'deploy/README.md',
  'examples/verify-service/README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
].filter((f) => existsSync(join(ROOT, f)));

/** Markdown text with fenced blocks and inline code removed (line count kept). */
function withoutCode(text: string, inline = true): string[] {
  let fence: string | undefined;
  return text.split('\n').map((l) => {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(l);
    if (m && (!fence || m[1]!.startsWith(fence))) {
      fence = fence ? undefined : m[1]!;
      return '';
    }
    if (fence) return '';
    return inline ? l.replace(/(`+)[^`]*?\1/g, '') : l;
  });
}

export function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of withoutCode(markdown, false)) {
    const h = /^(?:> ?)*#{1,6} (.*)$/.exec(line);
    if (!h) continue;
    const slug = h[1]!
      .trim()
      .toLowerCase()
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

describe('docs drift: relative links', () => {
  it('the anchor rule is GitHub’s', () => {
    expect(anchorsOf('# The `routes.<name>` keys\n## Upstream 401/403\n## A\n## A\n```\n# not a heading\n```')).toEqual(
      new Set(['the-routesname-keys', 'upstream-401403', 'a', 'a-1']),
    );
  });

  it('every relative link and anchor resolves', () => {
    const bad: string[] = [];
    let checked = 0;
    for (const file of FILES) {
      const lines = withoutCode(readFileSync(join(ROOT, file), 'utf8'));
      lines.forEach((line, i) => {
        for (const m of line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
          const href = m[1]!;
          if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // http:, https:, mailto:
          checked++;
          const [path, fragment] = href.split('#') as [string, string | undefined];
          const target = path ? normalize(join(dirname(file), decodeURI(path))) : file;
          if (!existsSync(join(ROOT, target))) {
            bad.push(`${file}:${i + 1}: ${href} (no ${target})`);
            continue;
          }
          if (fragment && target.endsWith('.md') && statSync(join(ROOT, target)).isFile()) {
            if (!anchorsOf(readFileSync(join(ROOT, target), 'utf8')).has(fragment)) bad.push(`${file}:${i + 1}: ${href} (no heading #${fragment} in ${target})`);
          }
        }
      });
    }
    expect(checked).toBeGreaterThan(50);
    expect(bad, bad.join('\n')).toEqual([]);
  });

  it('README.md links every page of docs/', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const pages = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'));
    expect(pages.filter((f) => !readme.includes(`](docs/${f}`))).toEqual([]);
  });
});
