import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { runCheck } from '../../src/bin/check.js';
import { checkDocument } from '../../src/config/check-report.js';
import { humanIssue, RAW_VALIDATOR_WORDING } from '../../src/config/human.js';
import { guessKind } from '../../src/config/kind.js';
import { readDocumentCollecting } from '../../src/config/load.js';

/**
 * The collecting validator behind `leash check` (src/config/check-report.ts): every problem
 * in one pass, with key paths, in words a user reads (never zod's), for all three kinds of
 * file; the kind told by score, so a misspelt key does not change it.
 */
const check = (text: string, env: Record<string, string> = {}) => {
  const { doc, problems } = readDocumentCollecting(text, env, 'test.yaml');
  return checkDocument(doc, problems);
};

export const FOUR_PROBLEM_AUTHORITY = `trustDomain: leash.local
credentials:
  openai: { kind: statik, source: { env: OPENAI_KEY } }
  search: { kind: jwt, audience: search-api, ttl: 15 }
policies:
  - identities: ["join:doc-*"]
    credentials: [openai, serach]
  - identities: ["doc-agent-*"]
    credentials: [search]
`;

describe('checkDocument: every problem in one pass', () => {
  it('an authority file with an unknown kind, a bare ttl, an undefined credential and a bad identity pattern: all four', () => {
    const r = check(FOUR_PROBLEM_AUTHORITY);
    expect(r.kind).toBe('authority');
    expect(r.authority).toBeUndefined();
    expect(r.problems).toEqual([
      'credentials.openai.kind: must have kind static, jwt, oauth2 or exec',
      'credentials.search.ttl: must be a TTL like "90s", "15m" or "1h"',
      'policies[0].credentials[1]: names no credential defined under credentials (got "serach"); did you mean "search"?',
      'policies[1].identities[0]: must start with "spiffe://" or "join:" (got "doc-agent-*")',
    ]);
  });

  it('checks across keys run although other keys have schema errors', () => {
    // Sidecar: a lease name with no authority section, next to a bad upstream and listen.
    const s = check('listen: nowhere\nroutes:\n  a:\n    upstream: ftp://x\n    credential: openai\n    inject: { header: authorization }\n    allow: []\n');
    expect(s.problems).toContain('routes.a.credential: a lease name needs an authority section; use { file: PATH } or { env: NAME } for a local secret');
    expect(s.problems).toContain('listen: must be "host:port", e.g. "127.0.0.1:8080" (got "nowhere")');
    expect(s.problems).toContain('routes.a.upstream: must be an http(s) URL (got "ftp://x")');
    // Dev: a lease name the authority half does not define, while the authority half has a bad key.
    const d = check(`authority:
  credentials: { openai-prod: { kind: static, source: { env: K } } }
  trustDomain: "NOT A DOMAIN"
sidecar:
  routes:
    openai: { upstream: https://x.example, credential: openai-prdo, inject: { header: x }, allow: [], maxSockets: 0 }
`);
    expect(d.kind).toBe('dev');
    expect(d.problems).toContain('sidecar.routes.openai.credential: names no credential the authority section defines (openai-prod); did you mean "openai-prod"?');
    expect(d.problems.some((l) => l.startsWith('authority.trustDomain: '))).toBe(true);
    expect(d.problems).toContain('sidecar.routes.openai.maxSockets: must be greater than 0 (got 0)');
  });

  it('the same problem found by the schema and by the raw check is reported once', () => {
    const r = check('credentials: { a: { kind: jwt, audience: x } }\npolicies: [{ identities: ["join:x"], credentials: [b] }]\n');
    expect(r.problems).toEqual(['policies[0].credentials[0]: names no credential defined under credentials (got "b"); did you mean "a"?']);
  });

  it('an unset ${VAR} is one problem, not also the schema\'s complaint about the empty value', () => {
    const r = check('listen: ${NOPE}\nroutes:\n  a: { upstream: "${UP}", credential: { env: K }, inject: { header: x }, allow: [] }\n');
    expect(r.problems).toEqual([
      'listen: environment variable NOPE is not set (use ${NOPE:-default} for a default)',
      'routes.a.upstream: environment variable UP is not set (use ${UP:-default} for a default)',
    ]);
  });

  it('a misspelt top-level key: did you mean, still read as its kind, its value still checked', () => {
    const r = check(FOUR_PROBLEM_AUTHORITY.replace('credentials:\n', 'credentails:\n'));
    expect(r.kind).toBe('authority');
    expect(r.reason).toBe('read as an authority file by its top-level keys trustDomain, credentails (≈ credentials) and policies');
    expect(r.problems[0]).toBe('credentails: unknown key; did you mean "credentials"?');
    // What lies behind the typo is reported in the same run, under the key as written.
    expect(r.problems).toContain('credentails.search.ttl: must be a TTL like "90s", "15m" or "1h"');
    expect(r.problems).toContain('policies[0].credentials[1]: names no credential defined under credentials (got "serach"); did you mean "search"?');
    expect(r.problems.some((l) => l.startsWith('credentials:'))).toBe(false);
  });

  it('a misspelt half of a dev file: unknown key with a suggestion, no noise about a sidecar authority section', () => {
    const text = readFileSync(join(process.cwd(), 'examples', 'dev.yaml'), 'utf8').replace(/^sidecar:/m, 'sidecars:');
    const r = check(text);
    expect(r.kind).toBe('dev');
    expect(r.problems).toEqual(['sidecars: unknown key; did you mean "sidecar"?']);
  });

  it('nested unknown keys get the closest key known at that place (union branches by their kind)', () => {
    const r = check('credentials:\n  s: { kind: jwt, audiance: x }\n  t: { kind: static, sorce: { env: K } }\n');
    expect(r.problems).toEqual(['credentials.s.audiance: unknown key; did you mean "audience"?', 'credentials.t.sorce: unknown key; did you mean "source"?']);
  });

  it('a key of another kind of file says so', () => {
    const r = check('routes:\n  a: { upstream: https://x.example, credential: { env: K }, inject: { header: x }, allow: [] }\npolicies: []\n');
    expect(r.kind).toBe('sidecar');
    expect(r.problems).toEqual(['policies: unknown key in a sidecar file (it is a key of an authority file)']);
  });

  it('the three examples are valid, each as its kind', () => {
    for (const [file, kind] of [
      ['sidecar.yaml', 'sidecar'],
      ['sidecar-leased.yaml', 'sidecar'],
      ['authority.yaml', 'authority'],
      ['dev.yaml', 'dev'],
    ] as const) {
      const r = check(readFileSync(join(process.cwd(), 'examples', file), 'utf8'));
      expect(r.problems, file).toEqual([]);
      expect(r.kind, file).toBe(kind);
    }
  });
});

describe('guessKind: by score, not by one key', () => {
  it.each([
    [['routes'], 'sidecar'],
    [['listen', 'admin', 'routes', 'authority'], 'sidecar'],
    [['trustDomain', 'credentials', 'policies'], 'authority'],
    [['credentails', 'policies'], 'authority'],
    [['credentails'], 'authority'],
    [['listen', 'credentails', 'admin'], 'authority'],
    [['authority', 'sidecar'], 'dev'],
    [['authority', 'sidecars'], 'dev'],
    [['authoriti', 'sidecar'], 'dev'],
    [['listen', 'route'], 'sidecar'],
    [[], 'sidecar'],
  ] as const)('%j → %s', (keys, kind) => {
    expect(guessKind(keys).kind).toBe(kind);
  });

  it('says when it assumed', () => {
    expect(guessKind([]).reason).toBe('read as a sidecar file: no top-level key tells the kind');
    expect(guessKind(['listen']).reason).toMatch(/fit an authority file as well/);
  });
});

/** zod 4's issue codes (z.core.$ZodIssue['code']); a new one fails the type check below. */
const CODES = ['invalid_type', 'too_big', 'too_small', 'invalid_format', 'not_multiple_of', 'unrecognized_keys', 'invalid_union', 'invalid_key', 'invalid_element', 'invalid_value', 'custom'] as const;
type Missing = Exclude<z.core.$ZodIssue['code'], (typeof CODES)[number]>;
const exhaustive: Missing extends never ? true : false = true;

describe('no validator wording reaches the user', () => {
  it('every zod issue code has a human message', () => {
    expect(exhaustive).toBe(true);
    const samples: z.core.$ZodRawIssue[] = [
      ...['string', 'number', 'int', 'boolean', 'array', 'object', 'record', 'null', 'bigint', 'date', 'symbol'].flatMap((expected) => [
        { code: 'invalid_type', expected, input: 1 } as z.core.$ZodRawIssue,
        { code: 'invalid_type', expected, input: undefined } as z.core.$ZodRawIssue,
      ]),
      ...['string', 'array', 'number', 'int', 'set', 'file'].flatMap((origin) =>
        [0, 1, 5].flatMap((n) =>
          [true, false].flatMap((inclusive) => [
            { code: 'too_small', origin, minimum: n, inclusive, input: 1 } as z.core.$ZodRawIssue,
            { code: 'too_big', origin, maximum: n, inclusive, input: 1 } as z.core.$ZodRawIssue,
          ]),
        ),
      ),
      ...['regex', 'url', 'email', 'uuid', 'starts_with'].map((format) => ({ code: 'invalid_format', format, pattern: '/x/', input: 'y' }) as z.core.$ZodRawIssue),
      { code: 'not_multiple_of', divisor: 3, input: 1 } as z.core.$ZodRawIssue,
      { code: 'unrecognized_keys', keys: ['x'], input: {} } as z.core.$ZodRawIssue,
      { code: 'invalid_union', errors: [], input: 1 } as z.core.$ZodRawIssue,
      { code: 'invalid_key', origin: 'record', issues: [], input: 1 } as z.core.$ZodRawIssue,
      { code: 'invalid_element', origin: 'map', key: 'k', issues: [], input: 1 } as z.core.$ZodRawIssue,
      { code: 'invalid_value', values: ['a', 'b'], input: 'c' } as z.core.$ZodRawIssue,
      { code: 'invalid_value', values: [1], input: 'c' } as z.core.$ZodRawIssue,
      { code: 'custom', input: 1 } as z.core.$ZodRawIssue,
    ];
    expect(new Set(samples.map((s) => s.code))).toEqual(new Set(CODES));
    for (const s of samples) {
      const message = humanIssue(s);
      expect(message, JSON.stringify(s)).toMatch(/^(must|is|has|does) /);
      expect(message, JSON.stringify(s)).not.toMatch(RAW_VALIDATOR_WORDING);
    }
  });

  it('hundreds of invalid files, made by breaking the examples key by key: no raw validator wording, every line a key path', () => {
    const bad: unknown[] = [42, -1, 0.5, 'x', '', true, null, [], ['x'], {}, { bogus: 1 }];
    let files = 0;
    let lines = 0;
    for (const name of ['sidecar.yaml', 'sidecar-leased.yaml', 'authority.yaml', 'dev.yaml']) {
      const base = parseDocument(readFileSync(join(process.cwd(), 'examples', name), 'utf8')).toJS() as Record<string, unknown>;
      for (const path of paths(base)) {
        for (const value of [...bad, DELETE, UNKNOWN_KEY]) {
          const doc = mutate(base, path, value);
          const { doc: expanded, problems: envProblems } = readDocumentCollecting(JSON.stringify(doc), {}, name);
          const r = checkDocument(expanded, envProblems);
          files++;
          for (const line of r.problems) {
            lines++;
            expect(line, `${name} ${path.join('.')} = ${JSON.stringify(value)}`).not.toMatch(RAW_VALIDATOR_WORDING);
            expect(line).toMatch(/^[^\s:]+: \S/);
            expect(line).not.toMatch(/\bvalid\b/i);
          }
        }
      }
    }
    expect(files).toBeGreaterThan(1000);
    expect(lines).toBeGreaterThan(1000);
    // CPU-bound (about 2 s quiet): a machine busy with other work stretched it past the
    // default 20 s once, so it gets its own limit.
  }, 60_000);
});

describe('runCheck options (for --strict and --kind)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leash-check-opts-'));
  const run = (text: string, opts: Parameters<typeof runCheck>[4] = {}) => {
    const path = join(dir, 'f.yaml');
    writeFileSync(path, text);
    const out: string[] = [];
    const err: string[] = [];
    const code = runCheck(path, {}, (l) => out.push(l), (l) => err.push(l), opts);
    return { code, out, err };
  };
  const sidecar = 'routes:\n  a: { upstream: https://x.example, credential: { env: UNSET_VAR }, inject: { header: x }, allow: [] }\n';

  it('a warning passes by default and fails under strict, with nothing called valid', () => {
    const plain = run(sidecar);
    expect(plain.code).toBe(0);
    expect(plain.out[0]).toMatch(/: valid \(sidecar\)$/);
    expect(plain.out).toContain('warning: routes.a.credential: environment variable UNSET_VAR is not set; this secret is unavailable until it is');
    const strict = run(sidecar, { strict: true });
    expect(strict.code).toBe(1);
    expect(strict.out).toEqual([]);
    expect(strict.err.join('\n')).not.toMatch(/valid/i);
    expect(strict.err[1]).toBe('  warning: routes.a.credential: environment variable UNSET_VAR is not set; this secret is unavailable until it is');
  });

  it('a kind given is used and said', () => {
    const r = run('listen: 127.0.0.1:1\n', { kind: 'authority' });
    expect(r.code).toBe(1);
    expect(r.err[0]).toMatch(/read as an authority file, as the --kind option says:$/);
    expect(r.err).toContain('  credentials: is required');
  });
});

const DELETE = Symbol('delete');
const UNKNOWN_KEY = Symbol('unknown key');

function paths(value: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (value === null || typeof value !== 'object') return [prefix];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

function mutate(base: unknown, path: ReadonlyArray<string | number>, value: unknown): unknown {
  const copy = structuredClone(base) as Record<string | number, unknown>;
  if (path.length === 0) {
    if (value === UNKNOWN_KEY) return { ...copy, lisen: 'x' };
    return copy;
  }
  let parent: Record<string | number, unknown> = copy;
  for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (value === DELETE) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (value === UNKNOWN_KEY) {
    const target = parent[last];
    if (target !== null && typeof target === 'object' && !Array.isArray(target)) (target as Record<string, unknown>).colour = 'blue';
    else parent[last] = { colour: 'blue' };
  } else parent[last] = value;
  return copy;
}
