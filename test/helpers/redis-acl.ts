import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The sidecars' Redis user as docs/revocation.md ("A Redis user for sidecars") gives it:
 * the one source of its rules for the tests (test/integration/redis-acl-sidecar.test.ts
 * applies it; test/integration/redis-acl-overlay.test.ts holds the deploy overlay's ACL
 * file to it). Read from the `redis-cli ACL SETUSER leash-sidecar …` block, shell quoting
 * undone.
 */
const DOC = join(import.meta.dirname, '..', '..', 'docs', 'revocation.md');

/** The documented rules, in order, the password rule as written (`>PASSWORD`). */
export function documentedSidecarAcl(): string[] {
  const text = readFileSync(DOC, 'utf8');
  const section = text.slice(text.indexOf('## A Redis user for sidecars'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('docs/revocation.md: no sh block under "A Redis user for sidecars"');
  const words = shellWords(block.replace(/\\\n/g, ' '));
  const at = words.indexOf('SETUSER');
  if (words[0] !== 'redis-cli' || words[1] !== 'ACL' || at !== 2 || words[3] !== 'leash-sidecar') {
    throw new Error(`docs/revocation.md: expected "redis-cli ACL SETUSER leash-sidecar …", got "${words.slice(0, 4).join(' ')}"`);
  }
  return words.slice(4);
}

/** The documented rules with `password` in place of the placeholder, for ACL SETUSER. */
export function documentedSidecarAclWith(password: string): string[] {
  const rules = documentedSidecarAcl();
  const i = rules.indexOf('>PASSWORD');
  if (i < 0) throw new Error("docs/revocation.md: the sidecar user's rules have no '>PASSWORD'");
  return rules.map((r, j) => (j === i ? `>${password}` : r));
}

/** Words of a shell command line: blanks split, single and double quotes group (no expansion). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      word ??= '';
    } else if (/\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + ch;
    }
  }
  if (quote) throw new Error(`unbalanced ${quote} in: ${line}`);
  if (word !== undefined) words.push(word);
  return words;
}
