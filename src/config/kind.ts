import { authoritySchema } from './authority.js';
import { injectorSchema } from './injector.js';
import { didYouMean, editDistance } from './cross-check.js';
import { knownKeysAt } from './schema-keys.js';
import { looksLikeSecret } from './secret-shape.js';
import { sidecarSchema } from './sidecar.js';

/**
 * Which of the three config files a document is, told from its top-level keys by score,
 * not by the presence of one key: a misspelt `credentails:` must not turn an authority
 * file into "a sidecar file missing routes". Each key written counts for every kind that
 * knows it, more for a key only one kind has (`routes`, `policies`), half as much for a
 * near miss of one (`credentails` ≈ `credentials`). Ties go to the sidecar, the common case.
 * An injector file (`leash injector`) shares listen, tls, authority and routes with the
 * others; it is told by `image`, which it requires and no other kind has.
 */
export type ConfigKind = 'sidecar' | 'authority' | 'dev' | 'injector';

export const KIND_KEYS: Readonly<Record<ConfigKind, readonly string[]>> = {
  sidecar: knownKeysAt(sidecarSchema, [], {}) ?? [],
  authority: knownKeysAt(authoritySchema, [], {}) ?? [],
  dev: ['authority', 'sidecar'],
  injector: knownKeysAt(injectorSchema, [], {}) ?? [],
};

/** The kinds told apart by score; an injector file is told by `image`, which it alone has and requires. */
export const KINDS: readonly ConfigKind[] = ['sidecar', 'authority', 'dev'];

export const KIND_NAME: Readonly<Record<ConfigKind, string>> = { sidecar: 'a sidecar file', authority: 'an authority file', dev: 'a leash dev file', injector: 'an injector file' };

export interface KindGuess {
  kind: ConfigKind;
  /** Why, for the report: "read as an authority file by its top-level keys …". */
  reason: string;
}

export function guessKind(keys: readonly string[]): KindGuess {
  if (keys.includes('image')) return { kind: 'injector', reason: 'read as an injector file by its top-level key image' };
  const owners = (k: string) => KINDS.filter((kind) => KIND_KEYS[kind].includes(k)).length;
  // A key no kind knows is a near miss of the kind(s) with the closest key, and only of those.
  const nearest = new Map<string, Map<ConfigKind, string>>();
  for (const key of keys) {
    if (owners(key) > 0 || looksLikeSecret(key)) continue; // a secret-shaped key is never repeated
    let min = Infinity;
    const byKind = new Map<ConfigKind, { guess: string; d: number }>();
    for (const kind of KINDS) {
      const guess = didYouMean(key, KIND_KEYS[kind]);
      if (guess === undefined) continue;
      const d = editDistance(key, guess);
      byKind.set(kind, { guess, d });
      min = Math.min(min, d);
    }
    nearest.set(key, new Map([...byKind].filter(([, g]) => g.d === min).map(([k, g]) => [k, g.guess])));
  }
  const scores = new Map<ConfigKind, { score: number; evidence: string[] }>();
  for (const kind of KINDS) {
    let score = 0;
    const evidence: string[] = [];
    for (const key of keys) {
      if (KIND_KEYS[kind].includes(key)) {
        score += 2 / owners(key);
        evidence.push(key);
        continue;
      }
      const guess = nearest.get(key)?.get(kind);
      if (guess !== undefined) {
        score += 1 / owners(guess);
        evidence.push(`${key} (≈ ${guess})`);
      }
    }
    scores.set(kind, { score, evidence });
  }
  let best: ConfigKind = 'sidecar';
  for (const kind of KINDS) if (scores.get(kind)!.score > scores.get(best)!.score) best = kind;
  const { score, evidence } = scores.get(best)!;
  const tied = KINDS.filter((k) => k !== best && scores.get(k)!.score === score);
  if (score === 0) return { kind: best, reason: `read as ${KIND_NAME[best]}: no top-level key tells the kind` };
  const because = `read as ${KIND_NAME[best]} by its top-level key${evidence.length === 1 ? '' : 's'} ${list(evidence)}`;
  return { kind: best, reason: tied.length ? `${because} (they fit ${tied.map((k) => KIND_NAME[k]).join(' or ')} as well)` : because };
}

function list(items: readonly string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}
