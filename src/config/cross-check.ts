import { INLINE_SECRET, looksLikeSecret } from './secret-shape.js';

/**
 * Checks across the two halves of a `leash dev` config (pure: typed configs in, problem
 * lines out). A sidecar route leasing a name the authority section does not define would
 * only ever be refused, and the name would be sent, refused and audited over and over;
 * so it is an error at load time, with the nearest defined name as a suggestion. The
 * unknown name itself is not repeated: it may be something pasted in by mistake.
 */
export function unknownLeaseNames(
  routes: Readonly<Record<string, { readonly credential?: unknown } | null | undefined>>,
  authorityCredentials: readonly string[],
  prefix = 'sidecar.',
): string[] {
  const known = new Set(authorityCredentials);
  const problems: string[] = [];
  for (const [route, r] of Object.entries(routes)) {
    const name = r?.credential;
    if (typeof name !== 'string' || known.has(name)) continue;
    if (looksLikeSecret(name)) {
      problems.push(`${prefix}routes.${route}.credential: ${INLINE_SECRET}`);
      continue;
    }
    const guess = didYouMean(name, authorityCredentials);
    const defined = authorityCredentials.length ? `defines (${authorityCredentials.join(', ')})` : 'defines (none)';
    problems.push(`${prefix}routes.${route}.credential: names no credential the authority section ${defined}${guess ? `; did you mean "${guess}"?` : ''}`);
  }
  return problems;
}

/** The closest candidate by edit distance, if it is close enough to be a typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // One edit per three characters, at least one: `credentails` → credentials, `lgo` → log,
  // but not `foo` → log (two of three letters changed is another word, not a typo).
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

/** Edit distance where swapping two adjacent characters is one edit (optimal string alignment; three rows). */
export function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j]!, before[j - 2]! + 1);
    }
    [before, prev] = [prev, cur];
  }
  return prev[b.length]!;
}
