import { compilePolicy, PolicyError } from '../authority/policy/policy.js';
import { authoritySchema, type AuthorityConfig } from './authority.js';
import { collectInjector } from './injector.js';
import { guessKind, KIND_KEYS, KINDS, KIND_NAME, type ConfigKind } from './kind.js';
import { aliasUnknownKeys, collectConfig, prefixLines, renameLines } from './load.js';
import { authorityProblems, devProblems, mergeProblems, sidecarProblems } from './semantic.js';
import { sidecarSchema, type SidecarConfig } from './sidecar.js';

/**
 * The collecting validator behind `leash check`: every problem of a sidecar, authority or
 * `leash dev` document in one pass, each a `key.path: reason` line, never zod's wording.
 * Schema problems, the checks across keys (semantic.ts) and unset `${VAR}`s are all
 * gathered; a parsed config is returned for each part that has none. Pure: the document
 * is already read and expanded, files are the caller's (bin/check.ts).
 */
export interface CheckReport {
  kind: ConfigKind;
  /** How the kind was told ("read as an authority file by its top-level keys …"). */
  reason: string;
  problems: string[];
  /** Things that are not wrong but not what the user may think (e.g. ignored keys). */
  notes: string[];
  /** Present when its part has no problem (both, for a dev file, only when the file has none). */
  sidecar?: SidecarConfig;
  authority?: AuthorityConfig;
  /** The key the dev file's halves were written under (`sidecars` if misspelt). */
  written: { authority: string; sidecar: string };
}

/** leash dev fills in the sidecar's authority section itself (bin/dev.ts). */
const DEV_AUTHORITY = { url: 'https://in-process.invalid', caFile: '(in-process)', bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } } };

type Raw = Record<string, unknown>;
const isMap = (v: unknown): v is Raw => v !== null && typeof v === 'object' && !Array.isArray(v);

export function checkDocument(doc: Raw, envProblems: readonly string[] = [], given?: ConfigKind): CheckReport {
  const { kind, reason } = given ? { kind: given, reason: `read as ${KIND_NAME[given]}, as the --kind option says` } : guessKind(Object.keys(doc));
  const report: CheckReport = { kind, reason, problems: [], notes: [], written: { authority: 'authority', sidecar: 'sidecar' } };
  if (kind === 'sidecar') {
    const { value, problems, input, renamed } = collectConfig(sidecarSchema, doc);
    report.problems = mergeProblems(envProblems, withOtherKinds(problems, doc, kind), renameLines(sidecarProblems(input as Raw), renamed));
    if (report.problems.length === 0) report.sidecar = value;
  } else if (kind === 'authority') {
    const { value, problems, input, renamed } = collectConfig(authoritySchema, doc);
    report.problems = mergeProblems(envProblems, withOtherKinds(problems, doc, kind), renameLines(authorityProblems(input as Raw), renamed), value ? policyProblems(value) : []);
    if (report.problems.length === 0) report.authority = value;
  } else if (kind === 'injector') {
    // Schema only: the injector's TLS files and each route's caFile live where it runs, not here.
    const { problems } = collectInjector(doc);
    report.problems = mergeProblems(envProblems, withOtherKinds(problems, doc, kind));
  } else {
    checkDev(doc, envProblems, report);
  }
  return report;
}

function checkDev(doc: Raw, envProblems: readonly string[], report: CheckReport): void {
  const { input, problems, renamed } = aliasUnknownKeys(doc, KIND_KEYS.dev);
  const halves = input as Raw;
  const written = { authority: renamed.get('authority') ?? 'authority', sidecar: renamed.get('sidecar') ?? 'sidecar' };
  report.written = written;
  const schemaProblems = [...problems];
  const semantic: string[] = [];
  let authority: AuthorityConfig | undefined;
  let sidecar: SidecarConfig | undefined;
  const rawAuthority = halves.authority;
  if (rawAuthority === undefined) schemaProblems.push('authority: is required; leash dev takes { authority: …, sidecar: … }');
  else if (!isMap(rawAuthority)) schemaProblems.push(`${written.authority}: must be a mapping of keys to values (the authority's configuration)`);
  else {
    // leash dev listens on a free loopback port unless told otherwise.
    const r = collectConfig(authoritySchema, { listen: '127.0.0.1:0', ...rawAuthority }, written.authority);
    schemaProblems.push(...r.problems);
    semantic.push(...prefixLines(renameLines(authorityProblems(r.input as Raw), r.renamed), written.authority), ...(r.value ? prefixLines(policyProblems(r.value), written.authority) : []));
    authority = r.value;
  }
  const rawSidecar = halves.sidecar;
  if (rawSidecar === undefined) schemaProblems.push('sidecar: is required; leash dev takes { authority: …, sidecar: … }');
  else if (!isMap(rawSidecar)) schemaProblems.push(`${written.sidecar}: must be a mapping of keys to values (the sidecar's configuration)`);
  else {
    if (rawSidecar.authority !== undefined) report.notes.push(`${written.sidecar}.authority: ignored; leash dev connects the sidecar to its in-process authority`);
    const r = collectConfig(sidecarSchema, { ...rawSidecar, authority: DEV_AUTHORITY }, written.sidecar);
    schemaProblems.push(...r.problems);
    sidecar = r.value;
  }
  semantic.push(...devProblems(rawAuthority, rawSidecar).map((l) => (written.sidecar === 'sidecar' ? l : l.replace(/^sidecar\./, `${written.sidecar}.`))));
  report.problems = mergeProblems(envProblems, schemaProblems, semantic);
  if (report.problems.length === 0) [report.authority, report.sidecar] = [authority, sidecar];
}

/** What `leash authority` refuses at start (policy.ts) is refused here too. */
function policyProblems(c: AuthorityConfig): string[] {
  try {
    compilePolicy(
      c.policies.map((p) => ({ identities: p.identities, credentials: p.credentials, maxTtlMs: p.maxTtl })),
      c.trustDomain,
    );
    return [];
  } catch (err) {
    if (err instanceof PolicyError) return [...err.issues];
    throw err;
  }
}

/**
 * An unknown top-level key that is a key of another kind of file says so: with the kind
 * told by score, `routes:` in an authority file is more likely pasted from the wrong file
 * than misspelt.
 */
function withOtherKinds(problems: readonly string[], doc: Raw, kind: ConfigKind): string[] {
  return problems.map((line) => {
    const m = /^([^.[\s:]+): unknown key/.exec(line);
    if (!m || !Object.hasOwn(doc, m[1]!)) return line;
    const other = KINDS.find((k) => k !== kind && KIND_KEYS[k].includes(m[1]!));
    return other ? `${m[1]}: unknown key in ${KIND_NAME[kind]} (it is a key of ${KIND_NAME[other]})` : line;
  });
}
