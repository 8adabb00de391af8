import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { UpstreamBadResponseError } from '../../core/errors.js';
import { RESPONSE_HOP_BY_HOP, responseSkipSet } from './headers.js';
import { endAndClose, sendError, sendSocketError } from './respond.js';
import type { RouteRuntime } from './route.js';
import { ScrubStream, type Scrubber } from './scrub.js';

/**
 * Writes the upstream's answer back to the agent (http-proxy runs with
 * selfHandleResponse, so this is the only place a response is written): hop-by-hop
 * headers dropped, held secrets scrubbed from headers, same-origin redirects rewritten to
 * the local prefix, bodies piped unbuffered — except error bodies, which are scrubbed.
 *
 * Nothing the upstream sends is written raw: the status must be a valid final status, the
 * reason phrase is always leash's own (an upstream may echo the key there), and a header
 * that cannot be written safely is dropped (docs/secret-hygiene.md).
 */
export const ERROR_BODY_LIMIT = 64 * 1024;

/** Headers that carry URLs (and so, with query injection, the key): fully scrubbed on every status. */
const URL_HEADERS = new Set(['location', 'content-location', 'refresh']);
/** leash's own headers (x-leash-error tells a leash answer from the upstream's): never taken from an upstream. */
const LEASH_PREFIX = 'x-leash-';
/** RFC 9110 token: what Node accepts as a header name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What Node refuses in a header value (it accepts HTAB, SP, VCHAR and obs-text). */
const BAD_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

/** RFC 9110 tchar, by code (TOKEN's class): 1 = allowed. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

/** TOKEN.test(name), without a regex call per response header (test/unit/hot-path-fast-paths.test.ts pins it). */
export function isToken(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** BAD_VALUE_CHAR.test(value), without a regex call per response header. */
export function hasBadValueChar(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return true;
  }
  return false;
}

/** The reason phrase leash sends: the standard one for the status, never the upstream's. */
export function reasonPhrase(status: number): string {
  return STATUS_CODES[status] ?? 'Unknown';
}

/**
 * Pure: why an upstream's final status cannot be relayed, or undefined. Node hands 1xx
 * interim answers (100, 102, 103) to 'information' and a flagged 101 to 'upgrade'; what
 * reaches a response handler must be 200–599 (Node itself would write 000 or 999, or throw).
 */
export function statusProblem(status: number | undefined): string | undefined {
  if (status === undefined || !Number.isInteger(status)) return 'no status code';
  if (status === 101) return 'status 101 without a completed upgrade';
  if (status < 200 || status > 599) return `invalid status code ${status}`;
  return undefined;
}

/**
 * Node's HTTP client keeps at most this many of an answer's header lines in `headers`
 * (its parser's default of 2000 header pairs counts names and values: 1000 lines) and
 * stops collecting `rawHeaders` a few lines later, while its parser still frames the body
 * by every line it read. A `Content-Encoding` or `Transfer-Encoding: gzip, chunked` past
 * that point was invisible to every check here: an error body went to the agent still
 * compressed, unscrubbed, without the header that says so. No API sends that many lines.
 */
export const MAX_RESPONSE_HEADERS = 1000;

/** Pure: the answer has (or may have) header lines that Node did not hand to leash. */
export function headerCountProblem(rawHeaders: readonly string[]): string | undefined {
  return rawHeaders.length >= 2 * MAX_RESPONSE_HEADERS ? `${MAX_RESPONSE_HEADERS} header lines or more` : undefined;
}

/**
 * Pure: the response's transfer-codings, when leash cannot relay them. Node removes
 * `chunked` and leash frames the answer itself; any other coding (`gzip, chunked`) would
 * leave a coded body that the agent cannot read without the header leash drops, and that
 * error-body scrubbing cannot see into — so the answer is refused.
 */
export function transferCodingProblem(rawHeaders: readonly string[]): string | undefined {
  const codings: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'transfer-encoding') continue;
    for (const c of rawHeaders[i + 1]!.split(',')) if (c.trim()) codings.push(c.trim().toLowerCase());
  }
  if (codings.length === 0 || (codings.length === 1 && codings[0] === 'chunked')) return undefined;
  return 'a transfer-coding other than chunked';
}

/** Node's parsed headers join every Transfer-Encoding line: absent there, nothing to check in the raw ones. */
const codingProblem = (res: IncomingMessage): string | undefined =>
  res.headers['transfer-encoding'] === undefined ? undefined : transferCodingProblem(res.rawHeaders);

export interface RelayedHeaders {
  /** Flat name/value list, ready for writeHead. */
  headers: string[];
  /** How many headers were dropped as unsafe (their names are not reported: one could hold a secret). */
  dropped: number;
}

/**
 * Pure: the upstream's raw headers as leash may write them. Hop-by-hop and `x-leash-*` names are skipped;
 * `valueOf` scrubs (and rewrites) a value. A header is dropped, never written raw, when its
 * name is not a token or holds a secret (scrubbing a name would not leave a valid name),
 * or when its value, once scrubbed, holds a byte Node refuses to write (writeHead throws).
 */
export function relayHeaders(
  raw: readonly string[],
  skip: ReadonlySet<string>,
  scrubber: Scrubber,
  valueOf: (lower: string, value: string) => string,
  fullNames = true,
): RelayedHeaders {
  return relayHeadersWith(raw, skip, scrubber, fullNames, callValueOf, valueOf);
}

const callValueOf = (lower: string, value: string, valueOf: (lower: string, value: string) => string): string => valueOf(lower, value);

/**
 * relayHeaders with `valueOf` a plain function of one state argument besides the header:
 * the per-response path (planResponse) passes its state that way instead of a closure
 * made for every answer.
 */
function relayHeadersWith<S>(
  raw: readonly string[],
  skip: ReadonlySet<string>,
  scrubber: Scrubber,
  fullNames: boolean,
  valueOf: (lower: string, value: string, state: S) => string,
  state: S,
): RelayedHeaders {
  const headers: string[] = [];
  let dropped = 0;
  const fixedSkip = skip === RESPONSE_HOP_BY_HOP;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const f = nameFactsAt(i >> 1, name);
    if (f.leash || (fixedSkip ? f.hop : skip.has(f.lower))) continue;
    // Names get the scrubbing their answer's values get: full on errors, whole values otherwise.
    // …and in any letter case: a name is case-insensitive, and re-cased on the way (nameHolds).
    if (!f.token || (fullNames ? scrubber.full(name) : scrubber.whole(name)) !== name || scrubber.nameHolds(f.lower, fullNames)) {
      dropped++;
      continue;
    }
    const value = valueOf(f.lower, raw[i + 1]!, state);
    if (hasBadValueChar(value)) {
      dropped++;
      continue;
    }
    headers.push(name, value);
  }
  return { headers, dropped };
}

/** What relayHeaders needs of a header name that does not depend on the answer or the scrubber. */
interface NameFacts {
  readonly lower: string;
  readonly token: boolean;
  /** One of the fixed hop-by-hop names (headers.ts RESPONSE_HOP_BY_HOP). */
  readonly hop: boolean;
  /** An `x-leash-*` name. */
  readonly leash: boolean;
}

/**
 * Names seen in answers, as sent (case included): the few an upstream uses again and again,
 * so each header costs one Map lookup instead of lowercasing, a Set lookup and a token scan
 * (relayHeadersWith was leash's largest function by instructions; the saving was not
 * measured on its own). Bounded: past MAX_NAMES, a new name is worked out each time, not kept, so an
 * upstream sending ever-new names cannot grow it. Pure facts of the name only — whether it
 * holds a secret is asked of the scrubber every time.
 */
const NAME_FACTS = new Map<string, NameFacts>();
const MAX_NAMES = 256;

/**
 * The names of the last answer relayed, by position, with their facts: an upstream sends the
 * same names in the same order answer after answer, and comparing each fresh name (Node makes
 * new strings per answer) with the one at its position costs less than hashing it for the
 * Map: −3k instructions per request, ~0.9 % (bench/RESULTS.md, ninth session). Only the
 * first LAST_SLOTS positions are kept; facts come from the name alone, so a stale slot can
 * only miss, never answer for another name.
 */
const LAST_SLOTS = 32;
const LAST_NAMES: Array<string | undefined> = new Array<string | undefined>(LAST_SLOTS).fill(undefined);
const LAST_FACTS: Array<NameFacts | undefined> = new Array<NameFacts | undefined>(LAST_SLOTS).fill(undefined);

function nameFactsAt(slot: number, name: string): NameFacts {
  if (slot >= LAST_SLOTS) return nameFacts(name);
  if (LAST_NAMES[slot] === name) return LAST_FACTS[slot]!;
  const f = nameFacts(name);
  LAST_NAMES[slot] = name;
  LAST_FACTS[slot] = f;
  return f;
}

function nameFacts(name: string): NameFacts {
  let f = NAME_FACTS.get(name);
  if (f === undefined) {
    const lower = name.toLowerCase();
    f = { lower, token: isToken(name), hop: RESPONSE_HOP_BY_HOP.has(lower), leash: lower.startsWith(LEASH_PREFIX) };
    if (NAME_FACTS.size < MAX_NAMES) NAME_FACTS.set(name, f);
  }
  return f;
}

/**
 * Mutates the headers of an upstream's `101` (http-proxy writes `proxyRes.headers` raw to
 * the agent's socket): every value — each element of an array such as `set-cookie` too —
 * fully scrubbed; a header whose name is not a token or holds a secret, or whose value
 * holds a byte that is not allowed, removed. Returns how many were removed.
 */
export function scrubUpgradeHeaders(headers: IncomingHttpHeaders, scrubber: Scrubber): number {
  let dropped = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (name.startsWith(LEASH_PREFIX)) {
      delete headers[name];
      continue;
    }
    const values = (Array.isArray(value) ? value : [value]).map((v) => scrubber.full(v));
    // Node hands the 101's names over lower-cased: the secret's own case is gone from them (nameHolds).
    if (!TOKEN.test(name) || scrubber.full(name) !== name || scrubber.nameHolds(name.toLowerCase(), true) || values.some((v) => BAD_VALUE_CHAR.test(v))) {
      delete headers[name];
      dropped++;
      continue;
    }
    headers[name] = Array.isArray(value) ? values : values[0];
  }
  return dropped;
}

export interface ForwardOutcome {
  /** Set when the answer was refused (the agent got this error instead). */
  refused: UpstreamBadResponseError | undefined;
  dropped: number;
}

/** The upstream's answer is abandoned: its socket is not reused (its framing is suspect). */
function abandon(proxyRes: IncomingMessage): void {
  proxyRes.on('error', () => undefined);
  proxyRes.destroy();
}

function refusal(problem: string, route: string): UpstreamBadResponseError {
  return new UpstreamBadResponseError(`the upstream's answer cannot be relayed: ${problem}`, { route });
}

/** The response-head phase's decision (planResponse): refuse the answer, or relay it so. */
export type ResponsePlan =
  | { readonly kind: 'refuse'; readonly problem: string }
  | {
      readonly kind: 'relay';
      readonly status: number;
      readonly reason: string;
      /** Flat name/value list, scrubbed, ready for writeHead. */
      readonly headers: string[];
      readonly dropped: number;
      /**
       * The response-body phase: `pipe` streams it unbuffered (`flush` first for an event
       * stream, so the first event is not held behind Node's header buffering), `scrub`
       * decodes, scrubs and re-frames it (errors, and redirect pages that may repeat a URL).
       */
      readonly body: 'pipe' | 'flush' | 'scrub';
    };

/**
 * What the response-head phase reads of the upstream's headers, from the raw name/value
 * list, as Node's parsed `headers` would give it: whether a Transfer-Encoding line is
 * there, the first Content-Type (Node drops later ones), every Connection value joined
 * with ", " (as Node joins them). Pinned against Node's own parse in
 * test/unit/hot-path-fast-paths.test.ts.
 */
export interface HeadFacts {
  transferEncoding: boolean;
  contentType: string | undefined;
  /** More than one Content-Type line (a browser reads them all and keeps the last valid type). */
  contentTypeRepeated: boolean;
  connection: string | undefined;
}

export function headFacts(raw: readonly string[]): HeadFacts {
  let transferEncoding = false;
  let contentType: string | undefined;
  let contentTypeRepeated = false;
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    // Only names of the right length are looked at, and lowercased only in an unusual case.
    const name = raw[i]!;
    if (name.length === 17) {
      if (name === 'Transfer-Encoding' || name === 'transfer-encoding' || name.toLowerCase() === 'transfer-encoding') transferEncoding = true;
    } else if (name.length === 12) {
      if (name === 'Content-Type' || name === 'content-type' || name.toLowerCase() === 'content-type') {
        if (contentType === undefined) contentType = raw[i + 1]!;
        else contentTypeRepeated = true;
      }
    } else if (name.length === 10) {
      if (name === 'Connection' || name === 'connection' || name.toLowerCase() === 'connection') connection = connection === undefined ? raw[i + 1]! : `${connection}, ${raw[i + 1]!}`;
    }
  }
  return { transferEncoding, contentType, contentTypeRepeated, connection };
}

/**
 * Pure: whether a browser might run an answer of this content type as a document with
 * scripts. Every route is served from one origin (`http://127.0.0.1:8080`), so a page an
 * upstream returns, opened in a browser the agent drives, would be same-origin with every
 * other route and could call and read them all (browser-guard.ts lets same-origin requests
 * through). Such answers get `Content-Security-Policy: sandbox`: a unique origin and no
 * scripts, so its requests carry `Origin: null` and are refused.
 *
 * Decided by what is known to be inert, not by a list of document types: browsers render
 * more than one could list (Chromium: `application/rss+xml`, `application/atom+xml`, every
 * `text/…+xml` as XML with XHTML scripts), sniff HTML out of `unknown/unknown`,
 * `application/unknown`, `*\/*` and a type without a `/`, and read a Content-Type holding
 * several types (commas, or several lines: `repeated`) by its last valid one. APIs answer
 * JSON, event streams, text and media: untouched.
 */
export function isActiveContent(contentType: string | undefined, repeated = false): boolean {
  if (contentType === undefined || repeated) return true;
  // What APIs answer: decided without a lower-cased copy.
  if (contentType === 'application/json' || contentType === 'application/json; charset=utf-8' || contentType === 'text/event-stream') return false;
  // Several types: the browser keeps the last one it can parse, whatever the first says.
  if (contentType.includes(',')) return true;
  const semi = contentType.indexOf(';');
  return !isInertType((semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase());
}

/** Essences a browser shows as data, text or media, or downloads: never a document with scripts. */
const INERT_TYPES = new Set(['application/json', 'application/x-ndjson', 'text/event-stream', 'text/plain', 'text/csv', 'application/octet-stream']);

function isInertType(essence: string): boolean {
  if (INERT_TYPES.has(essence)) return true;
  const slash = essence.indexOf('/');
  if (slash <= 0) return false;
  const top = essence.slice(0, slash);
  // image/svg+xml (and any other +xml) is a document; other images are pictures.
  if (top === 'image') return !essence.endsWith('+xml');
  if (top === 'audio' || top === 'video' || top === 'font') return true;
  return top === 'application' && essence.endsWith('+json');
}

/** What planResponse reads of an upstream answer (an IncomingMessage, or a test's literal). */
export type ResponseHead = Pick<IncomingMessage, 'statusCode' | 'headers' | 'rawHeaders'>;

/**
 * The response-head phase. Pure: from the upstream's status and headers, the method and
 * the scrubber, what the agent gets — refused (invalid status, a transfer-coding leash
 * cannot relay), or the status with leash's reason phrase, the relayed headers (hop-by-hop
 * and `x-leash-*` dropped, secrets scrubbed, a same-origin `Location` brought back through
 * leash by `agentLocation`), and how the body goes.
 */
export function planResponse(up: ResponseHead, method: string, scrubber: Scrubber, agentLocation: (location: string) => string): ResponsePlan {
  return planResponseWith(up, method, scrubber, callAgentLocation, agentLocation, undefined);
}

const callAgentLocation = (location: string, agentLocation: (location: string) => string): string => agentLocation(location);

/**
 * What a relayed header value becomes (scrubbed — fully on errors and URL headers — and a
 * Location brought back through leash): the state of one answer in one object, made per
 * answer instead of two closures.
 */
interface ValueRule<A, B> {
  readonly isError: boolean;
  readonly scrubber: Scrubber;
  readonly locate: (location: string, a: A, b: B) => string;
  readonly a: A;
  readonly b: B;
  /** The `Host` the agent addressed leash by, if it sent one (Link targets are made absolute on it). */
  readonly agentHost: string | undefined;
}

function relayedValue<A, B>(lower: string, raw: string, rule: ValueRule<A, B>): string {
  const full = rule.isError || URL_HEADERS.has(lower);
  const value = full ? rule.scrubber.full(raw) : rule.scrubber.whole(raw);
  let rewritten: string;
  if (lower === 'location') rewritten = rule.locate(value, rule.a, rule.b);
  else if (lower === 'link') rewritten = rewriteLinkTargets(value, (target) => linkTarget(target, rule));
  else return value;
  // Scrubbed again once rewritten: the URL parser drops tabs (a header value may hold them),
  // so a value split by tabs, which no form matched, would come out whole.
  if (rewritten === value) return value;
  return full ? rule.scrubber.full(rewritten) : rule.scrubber.whole(rewritten);
}

/**
 * A `Link` target as the agent follows it: like a Location (rewriteLocation), and a target
 * brought back through leash is made absolute on the agent's Host. Clients take a link as
 * given, not resolved against the request (Octokit prepends its base URL to a path, which
 * already holds the route prefix; PyGithub requires its base URL's host).
 */
function linkTarget<A, B>(target: string, rule: ValueRule<A, B>): string {
  const located = rule.locate(target, rule.a, rule.b);
  if (located === target || !located.startsWith('/') || rule.agentHost === undefined) return located;
  return `http://${rule.agentHost}${located}`;
}

/**
 * Pure: a Link header value (RFC 8288: `<target>; param=value, <target>; …`) with each
 * link's target passed through `rewrite`; parameters (quoted strings with `<`, `>` or `,`
 * included) are left byte for byte. Text that does not parse as links is returned as is.
 */
export function rewriteLinkTargets(value: string, rewrite: (target: string) => string): string {
  let out = '';
  let from = 0;
  let i = 0;
  while (i < value.length) {
    // The start of a link-value: optional whitespace and commas, then `<`.
    while (i < value.length && (value[i] === ' ' || value[i] === '\t' || value[i] === ',')) i++;
    if (i >= value.length) break;
    if (value[i] !== '<') return value;
    const end = value.indexOf('>', i + 1);
    if (end === -1) return value;
    const target = value.slice(i + 1, end);
    const rewritten = rewrite(target);
    if (rewritten !== target) {
      out += `${value.slice(from, i + 1)}${rewritten}`;
      from = end;
    }
    // Its parameters, up to the next comma outside a quoted string.
    i = end + 1;
    while (i < value.length && value[i] !== ',') {
      if (value[i] === '"') {
        for (i++; i < value.length && value[i] !== '"'; i++) if (value[i] === '\\') i++;
      }
      i++;
    }
  }
  return out + value.slice(from);
}

/** planResponse with the Location rewrite as a plain function of `a` and `b` (no closure per answer). */
function planResponseWith<A, B>(
  up: ResponseHead,
  method: string,
  scrubber: Scrubber,
  locate: (location: string, a: A, b: B) => string,
  a: A,
  b: B,
  agentHost?: string,
): ResponsePlan {
  // From the raw headers only: IncomingMessage builds its parsed `headers` object on first
  // access (≈ 8k instructions per answer, issue 11), and nothing else on this path needs it.
  const facts = headFacts(up.rawHeaders);
  const problem =
    statusProblem(up.statusCode) ?? headerCountProblem(up.rawHeaders) ?? (facts.transferEncoding ? transferCodingProblem(up.rawHeaders) : undefined);
  if (problem !== undefined) return { kind: 'refuse', problem };
  const status = up.statusCode!;
  const isError = status >= 400;
  // A redirect's body usually repeats its target URL (framework "Redirecting to …" pages):
  // with query injection that URL carries the credential, so it is scrubbed like an error body.
  const isRedirect = status >= 300 && status < 400;
  const stream = (facts.contentType ?? '').startsWith('text/event-stream');
  // An error or a redirect is scrubbed whatever its content type (a 401 or a 302 sent as an
  // event stream included: the upstream, not leash, would otherwise choose to skip it).
  const scrub = (isError || isRedirect) && method !== 'HEAD' && status !== 204 && status !== 304;
  const hop = responseSkipSet(facts.connection);
  // A scrubbed body is decoded and re-framed by leash: the upstream's framing does not apply.
  const skip = scrub ? new Set([...hop, 'content-length', 'content-encoding']) : hop;
  const rule: ValueRule<A, B> = { isError, scrubber, locate, a, b, agentHost };
  const { headers, dropped } = relayHeadersWith(up.rawHeaders, skip, scrubber, isError, relayedValue, rule);
  if (isActiveContent(facts.contentType, facts.contentTypeRepeated)) headers.push('content-security-policy', 'sandbox');
  return { kind: 'relay', status, reason: reasonPhrase(status), headers, dropped, body: scrub ? 'scrub' : stream ? 'flush' : 'pipe' };
}

/**
 * Relays one upstream answer: the head phase (planResponse), then the body phase. May
 * still throw on something unforeseen; the caller turns that into a 502 (or cuts the
 * response once headers are out) instead of a crash.
 */
export function forwardResponse(
  proxyRes: IncomingMessage,
  res: ServerResponse,
  route: RouteRuntime,
  method: string,
  scrubber: Scrubber,
  agentPath: (route: RouteRuntime, rest: string) => string = prefixAgentPath,
): ForwardOutcome {
  const plan = planResponseWith(proxyRes, method, scrubber, rewriteLocation, route, agentPath, res.req?.headers.host);
  if (plan.kind === 'refuse') {
    abandon(proxyRes);
    const refused = refusal(plan.problem, route.name);
    sendError(res, refused);
    return { refused, dropped: 0 };
  }
  // The upstream's answer broke off (premature close, bad chunking): a 502 while nothing
  // has been written to the agent (a buffered error body), a cut connection after.
  const broken = () => {
    abandon(proxyRes);
    if (!res.writableEnded) sendError(res, refusal('it broke off or is malformed', route.name));
  };
  proxyRes.on('error', broken);
  if (plan.body === 'scrub') scrubErrorBody(proxyRes, res, plan.status, plan.reason, plan.headers, scrubber, broken);
  else {
    res.writeHead(plan.status, plan.reason, plan.headers);
    if (plan.body === 'flush') res.flushHeaders();
    proxyRes.pipe(res);
  }
  return { refused: undefined, dropped: plan.dropped };
}

/** `/<route>/rest`: how an agent addresses a route chosen by path prefix (resolve.ts PrefixResolver). */
const prefixAgentPath = (route: RouteRuntime, rest: string): string => `/${route.name}${rest}`;

function decoderFor(encoding: string | undefined): Transform | 'identity' | undefined {
  switch ((encoding ?? 'identity').trim().toLowerCase()) {
    case 'identity':
    case '':
      return 'identity';
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return undefined;
  }
}

function scrubErrorBody(
  proxyRes: IncomingMessage,
  res: ServerResponse,
  status: number,
  reason: string,
  headers: string[],
  scrubber: Scrubber,
  broken: () => void,
): void {
  const decoder = decoderFor(proxyRes.headers['content-encoding']);
  if (decoder === undefined) {
    // An encoding leash cannot decode cannot be scrubbed: withhold the body, keep the status.
    proxyRes.resume();
    res.writeHead(status, reason, [...headers, 'content-length', '0', 'x-leash-body-withheld', 'unscrubbable-encoding']);
    res.end();
    return;
  }
  let source: Readable = proxyRes;
  if (decoder !== 'identity') {
    decoder.on('error', broken);
    source = proxyRes.pipe(decoder);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size <= ERROR_BODY_LIMIT) return;
    // Too large to hold: stream the rest, scrubbing whole secrets across chunk borders.
    source.off('data', onData).off('end', onEnd);
    source.pause();
    res.writeHead(status, reason, headers);
    const scrub = new ScrubStream(scrubber);
    scrub.pipe(res);
    for (const c of chunks) scrub.write(c);
    chunks.length = 0;
    source.pipe(scrub);
  };
  const onEnd = () => {
    const body = Buffer.concat(chunks);
    const text = body.toString('utf8');
    const scrubbed = scrubber.full(text);
    const out = scrubbed === text ? body : Buffer.from(scrubbed, 'utf8');
    res.writeHead(status, reason, [...headers, 'content-length', String(out.length)]);
    res.end(out);
  };
  source.on('data', onData).on('end', onEnd);
}

/**
 * A redirect to the upstream origin inside the route's base path becomes the path the
 * agent uses for it (`/<route>/…` when routes are chosen by prefix: resolve.ts), so the
 * agent comes back through leash. Anything else is left as is:
 * leash never follows redirects, so the credential never reaches another host.
 */
export function rewriteLocation(location: string, route: RouteRuntime, agentPath: (route: RouteRuntime, rest: string) => string = prefixAgentPath): string {
  let path: string | undefined;
  if (location.startsWith('/') && !location.startsWith('//') && !location.startsWith('/\\')) path = location;
  else if (/^https?:\/\//i.test(location)) {
    try {
      const u = new URL(location);
      if (u.origin === route.origin) path = `${u.pathname}${u.search}${u.hash}`;
    } catch {
      return location;
    }
  }
  if (path === undefined) return location;
  const base = route.basePath;
  if (base && path !== base && !path.startsWith(`${base}/`) && !path.startsWith(`${base}?`)) return `${route.origin}${path}`;
  const rest = path.slice(base.length);
  return agentPath(route, rest.startsWith('/') ? rest : `/${rest}`);
}

/**
 * An upstream's answer written raw to an upgrade socket (a refused WebSocket handshake):
 * the same status and header checks as forwardResponse, hop-by-hop headers dropped,
 * headers and body fully scrubbed, the connection closed.
 */
export function writeRawResponse(proxyRes: IncomingMessage, socket: Duplex, scrubber: Scrubber, route: string): ForwardOutcome {
  const problem = statusProblem(proxyRes.statusCode) ?? headerCountProblem(proxyRes.rawHeaders) ?? codingProblem(proxyRes);
  if (problem !== undefined) {
    abandon(proxyRes);
    const refused = refusal(problem, route);
    sendSocketError(socket, refused);
    return { refused, dropped: 0 };
  }
  const status = proxyRes.statusCode!;
  const skip = new Set([...responseSkipSet(proxyRes.headers.connection), 'content-length', 'content-encoding']);
  const { headers, dropped } = relayHeaders(proxyRes.rawHeaders, skip, scrubber, (_lower, value) => scrubber.full(value));
  let head = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  const chunks: Buffer[] = [];
  let size = 0;
  proxyRes.on('data', (c: Buffer) => {
    size += c.length;
    if (size > ERROR_BODY_LIMIT) {
      proxyRes.destroy();
      socket.destroy();
    } else chunks.push(c);
  });
  proxyRes.on('error', () => socket.destroy());
  proxyRes.on('end', () => {
    const encoded = proxyRes.headers['content-encoding'];
    const text = encoded && encoded !== 'identity' ? '' : scrubber.full(Buffer.concat(chunks).toString('utf8'));
    const body = Buffer.from(text, 'utf8');
    // Header values are latin1 strings (obs-text round-trips byte for byte); the body is UTF-8.
    endAndClose(socket, Buffer.concat([Buffer.from(`${head}content-length: ${body.length}\r\nconnection: close\r\n\r\n`, 'latin1'), body]));
  });
  return { refused: undefined, dropped };
}
