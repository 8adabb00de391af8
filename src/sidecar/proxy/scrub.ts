import { Transform, type TransformCallback } from 'node:stream';
import { formatted } from './inject.js';

/**
 * Removes held secrets echoed by an upstream (docs/secret-hygiene.md). OpenAI, for one,
 * answers a bad key with `Incorrect API key provided: sk-…` — whole, or masked as
 * `sk-proj-abc*****wxyz`. The rule, for each held secret and the forms leash sends it in:
 *  1. the whole value, and every encoding of it (below), is replaced with `[REDACTED]`;
 *  2. in full scrubbing, any run of ≥ FRAGMENT characters that appears in a secret is too;
 *  3. in full scrubbing, a masked token (`*`, `•`, `…` or `...` runs) whose visible prefix
 *     (≥ 3 chars) starts a secret or whose visible suffix (≥ 4 chars) ends one.
 * Encodings (rule 1): base64 and base64url, padded or not, of the value, of
 * `username:value` (basic auth) and of the injected header value (`Bearer <value>`), and
 * the base64 of the value at any byte offset inside a longer base64 text; then, in text
 * holding `%`, `\` or `&`, the same forms under percent-encoding (any hex case, any subset
 * of bytes, nested `%25…` levels), JSON / JS escapes (`\uXXXX`, `\/`, `\"`, `\\`) and HTML
 * character references, in any mixture and up to LEVELS encoders deep (`&quot;` then
 * percent-encoded is `%26quot%3B`).
 * Full scrubbing is used on headers of error answers and error bodies up to 64 KiB; the
 * fast `whole` form on every other response header and on larger error bodies (streamed).
 */
export const REDACTED = '[REDACTED]';
const FRAGMENT = 8;
/**
 * A mask run; the token around it is found by scanning `[A-Za-z0-9_-]` characters outward
 * from it. (A regex with the token classes around the run, `[…]*(?:run)[…]*`, is retried
 * from every character of a long token: quadratic, seconds for a 64 KiB echo.)
 */
const MASK_RUN = /[*•]{3,}|…+|\.{3,}/g;
const isTokenChar = (c: number): boolean => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 45;
/**
 * Base64 of a value at an unknown offset is matched by its offset-independent middle; a
 * middle shorter than this is too short to be told from ordinary text, so is not used.
 */
const MIN_CORE = 12;
/**
 * One escaped character: `%XX` under any number of `%25` levels; JSON's `\uXXXX`, `\/`,
 * `\"` and `\\` (JSON inside JSON, `\\u002d`, is read by the next level: `\\` is `\`);
 * and an HTML character reference — decimal `&#45;` or hex `&#x2d;` (the `;` optional, as
 * browsers read them) or one of the names in HTML_NAMED, under up to three `&amp;` levels
 * (HTML escaped again). Bounded, not `(?:amp;)*`: an unbounded run would be rescanned from
 * every `&` in it, quadratic on an echoed run of them.
 */
const ESCAPE = /%(?:25)*([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})|\\\/|&(?:amp;){0,3}#(?:([0-9]{1,7})|[xX]([0-9A-Fa-f]{1,6}));?|&(?:amp;){0,3}([A-Za-z]{2,8});|\\(["\\])/g;
/**
 * How many times escaped text is decoded: an upstream may apply one encoder to what
 * another produced (`"` in JSON is `\"`, percent-encoded `%5C%22`; HTML's `&quot;`
 * percent-encoded `%26quot%3B`), and a held value may itself hold what reads as an escape
 * (`%3f`), which each level's decoding then reads one level further. Each pass shortens
 * the text; four passes decode three encoders over a value with escapes of its own.
 */
const LEVELS = 4;
/**
 * HTML's named references for the ASCII punctuation a credential or its base64 can hold
 * (HTML5 names; the 8-letter bound above covers them). Other names (`&eacute;`) are left
 * as they are: they cannot stand for a character of a held form.
 */
const HTML_NAMED: Readonly<Record<string, string>> = {
  excl: '!', quot: '"', QUOT: '"', num: '#', dollar: '$', percnt: '%', amp: '&', AMP: '&', apos: "'",
  lpar: '(', rpar: ')', ast: '*', midast: '*', plus: '+', comma: ',', period: '.', sol: '/',
  colon: ':', semi: ';', lt: '<', LT: '<', equals: '=', gt: '>', GT: '>', quest: '?', commat: '@',
  lsqb: '[', lbrack: '[', bsol: '\\', rsqb: ']', rbrack: ']', Hat: '^', lowbar: '_', grave: '`',
  lcub: '{', lbrace: '{', verbar: '|', vert: '|', rcub: '}', rbrace: '}',
};
/**
 * How many characters an escaped character takes at most, for holding back text across
 * stream chunks: `\\u002d` is 7, `&lowbar;` and `&#x0002d` 8, `%252D` 5, and three
 * encoders deep (`"` as JSON, then HTML, then percent: `%5C%26quot%3B`) 13; `&amp;amp;quot;`
 * 14. Deeper nesting is still found in held text.
 */
const MAX_EXPANSION = 16;

/** How a route sends its credential: the wrappers whose encodings are scrubbed too. */
export interface ScrubOptions {
  /** `inject.basic.username`: base64 of `username:value` is looked for. */
  readonly basicUser?: string;
  /** `inject.format` (`Bearer {{credential}}`): the header value leash sets. */
  readonly format?: string;
}

// UTF-8, as leash builds `Basic` (values themselves are printable ASCII).
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const toUrl = (s: string): string => s.replace(/\+/g, '-').replace(/\//g, '_');

/** Base64 forms of `text`: standard and url alphabets, padded and unpadded. */
function base64Forms(text: string): string[] {
  const padded = b64(text);
  const bare = padded.replace(/=+$/, '');
  return [padded, bare, toUrl(padded), toUrl(bare)];
}

/**
 * The part of base64(…value…) that depends only on `value`, for each of the three byte
 * offsets the value can start at inside a longer base64-encoded text (both alphabets).
 * Character i of base64 carries bits [6i, 6i+6): with k unknown bytes before the value
 * the first ⌈8k/6⌉ characters mix in those bytes, and characters past ⌊8(k+n)/6⌋ mix in
 * whatever follows.
 */
function base64Cores(value: string): string[] {
  const out: string[] = [];
  const bytes = Buffer.from(value, 'utf8');
  for (let k = 0; k < 3; k++) {
    const enc = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    const core = enc.slice(Math.ceil((8 * k) / 6), Math.floor((8 * (k + bytes.length)) / 6));
    if (core.length >= MIN_CORE) out.push(core, toUrl(core));
  }
  return out;
}

/** Every literal (case-sensitive) form of a value that whole-value scrubbing looks for. */
export function literalForms(value: string, options: ScrubOptions = {}): string[] {
  // Hex (either case) is byte-aligned: the value's own hex is inside the hex of any text around it.
  const hex = Buffer.from(value, 'utf8').toString('hex');
  const forms = [value, ...base64Forms(value), ...base64Cores(value), hex, hex.toUpperCase()];
  // A query route sends the value percent-encoded, and an upstream that base64-encodes the
  // URL it was asked for (an SSO `return_to`, a cursor, a trace id) holds the base64 of
  // that form: looked for on every route, as the value's own base64 is.
  const sent = encodeURIComponent(value);
  if (sent !== value) forms.push(...base64Forms(sent), ...base64Cores(sent));
  if (options.basicUser !== undefined) {
    const pair = base64Forms(`${options.basicUser}:${value}`); // [0] is basicToken(user, value)
    forms.push(`Basic ${pair[0]}`, ...pair);
  }
  if (options.format !== undefined && options.format !== '{{credential}}') {
    const sent = formatted(options.format, value);
    forms.push(sent, ...base64Forms(sent));
  }
  return forms;
}

/** Forms whose fragments and masked forms count (rules 2 and 3): what leash itself sends. */
function fragmentSources(value: string, options: ScrubOptions): string[] {
  const forms = [value];
  const enc = encodeURIComponent(value);
  if (enc !== value) forms.push(enc);
  if (options.basicUser !== undefined) forms.push(b64(`${options.basicUser}:${value}`));
  return forms;
}

/**
 * What one ESCAPE match stands for; the match itself when it stands for nothing leash
 * decodes (an unknown entity name, a code point past U+10FFFF).
 */
function decodeEscape(
  m: string,
  pct: string | undefined,
  u: string | undefined,
  dec: string | undefined,
  hex: string | undefined,
  name: string | undefined,
  short: string | undefined,
): string {
  if (short !== undefined) return short;
  const hex4 = pct ?? u;
  if (hex4 !== undefined) return String.fromCharCode(parseInt(hex4, 16));
  if (dec !== undefined || hex !== undefined) {
    const code = dec !== undefined ? parseInt(dec, 10) : parseInt(hex!, 16);
    return code <= 0x10ffff ? String.fromCodePoint(code) : m;
  }
  if (name !== undefined) return Object.hasOwn(HTML_NAMED, name) ? HTML_NAMED[name]! : m;
  return '/';
}

/** decodeEscape on a RegExp match. */
const decodeMatch = (m: RegExpExecArray): string => decodeEscape(m[0], m[1], m[2], m[3], m[4], m[5], m[6]);

/**
 * Anchors: of each value's forms, those that contain no other form of the same value (the
 * value itself, the base64 middles). Every form contains one, so finding none means
 * finding no form.
 */
function anchorsOf(perValue: readonly (readonly string[])[]): string[] {
  return [...new Set(perValue.flatMap((forms) => forms.filter((f) => !forms.some((g) => g !== f && f.includes(g)))))];
}

/** `text` with its escapes decoded, LEVELS times over (what the escaped view reads). */
function decodedView(text: string): string {
  let out = text;
  for (let level = 0; level < LEVELS; level++) {
    ESCAPE.lastIndex = 0;
    const next = out.replace(ESCAPE, decodeEscape);
    if (next === out) break;
    out = next;
    if (!mayEscape(out)) break;
  }
  return out;
}

/**
 * What must follow a decoded `&`, `\` or `%` for the next level to read an escape there
 * (the text after it may itself still be escaped: `%26quot%3B` is `&quot;`).
 */
const CONTINUES: Readonly<Record<string, RegExp>> = {
  '&': /#|%(?:25)*23|[A-Za-z]{2,8}(?:;|%(?:25)*3[Bb])/y,
  '\\': /[u"\\/]|%(?:25)*(?:5[Cc]|22|2[Ff]|75)/y,
  '%': /[0-9A-Fa-f]{2}|%/y,
};

/** Whether a decoded `rep` at `at` in `text` starts an escape the next decoding level reads. */
function startsEscape(rep: string, text: string, at: number): boolean {
  const next = CONTINUES[rep];
  if (next === undefined) return false;
  next.lastIndex = at;
  return next.test(text);
}

/** Whether `text` can hold an escape at all (the characters ESCAPE starts with). */
const mayEscape = (text: string): boolean => text.includes('%') || text.includes('\\') || text.includes('&');

/**
 * `text` with escapes decoded, and for each decoded character where it starts in `text`
 * (`starts[decoded.length]` is `text.length`); undefined when there is no escape.
 */
function unescape(text: string): { decoded: string; starts: number[] } | undefined {
  ESCAPE.lastIndex = 0;
  let m = ESCAPE.exec(text);
  if (!m) return undefined;
  let decoded = '';
  const starts: number[] = [];
  let from = 0;
  while (m) {
    for (let i = from; i < m.index; i++) starts.push(i);
    decoded += text.slice(from, m.index);
    const rep = decodeMatch(m);
    decoded += rep;
    // Left as it was (an unknown entity): each character from itself; decoded (one
    // character, or two for a code point past U+FFFF): from where the escape starts.
    if (rep === m[0]) for (let k = 0; k < rep.length; k++) starts.push(m.index + k);
    else for (let k = 0; k < rep.length; k++) starts.push(m.index);
    from = m.index + m[0].length;
    m = ESCAPE.exec(text);
  }
  for (let i = from; i < text.length; i++) starts.push(i);
  decoded += text.slice(from);
  starts.push(text.length);
  return { decoded, starts };
}

/** unescape, LEVELS times over, each decoded character mapped back to where it starts in `text`. */
function unescapeAll(text: string): { decoded: string; starts: number[] } | undefined {
  let view = unescape(text);
  if (!view) return undefined;
  for (let level = 1; level < LEVELS; level++) {
    const next = unescape(view.decoded);
    if (!next || next.decoded === view.decoded) break;
    const outer: readonly number[] = view.starts;
    view = { decoded: next.decoded, starts: next.starts.map((i) => outer[i]!) };
  }
  return view;
}

export class Scrubber {
  private readonly secrets: readonly string[];
  private readonly forms: readonly string[];
  private readonly shortest: number;
  /** The forms that contain no other form of the same value (see mayHold). */
  private readonly anchors: readonly string[];
  /** The forms as the escaped view reads them (decodedView), longest first. */
  private readonly viewForms: readonly string[];
  /** The view forms that contain no other view form of the same value. */
  private readonly viewAnchors: readonly string[];
  /** Char codes < 128 that occur in a view anchor (or start an escape: startsEscape). */
  private readonly alphabet = new Uint8Array(128);
  private readonly fragments: ReadonlySet<string>;
  /** The longest held value. */
  readonly longest: number;
  /** The most characters one encoded occurrence can span (what a stream must hold back). */
  readonly span: number;

  /** The values this scrubber was built from. */
  readonly values: readonly string[];

  constructor(
    values: readonly string[],
    readonly options: ScrubOptions = {},
  ) {
    this.values = values;
    const held = [...new Set(values.filter((v) => v.length > 0))];
    const byLength = (a: string, b: string) => b.length - a.length;
    this.secrets = [...new Set(held.flatMap((v) => fragmentSources(v, options)))].sort(byLength);
    // Longest first, so a form that contains another (padded base64, `Bearer <value>`) goes whole.
    const perValue = held.map((v) => [...new Set([...fragmentSources(v, options), ...literalForms(v, options)])]);
    this.forms = [...new Set(perValue.flat())].sort(byLength);
    this.shortest = this.forms.at(-1)?.length ?? 0;
    this.anchors = anchorsOf(perValue);
    // In the escaped view a form that holds what reads as an escape shows decoded; one
    // that would shrink below FRAGMENT characters is too short to be told from ordinary
    // text and is left to the literal pass.
    const perValueView = perValue.map((forms) => [
      ...new Set(
        forms.flatMap((f) => {
          const v = decodedView(f);
          return v === f || v.length >= FRAGMENT ? [v] : [];
        }),
      ),
    ]);
    this.viewForms = [...new Set(perValueView.flat())].sort(byLength);
    this.viewAnchors = anchorsOf(perValueView);
    for (const a of this.viewAnchors) for (let i = 0; i < a.length; i++) if (a.charCodeAt(i) < 128) this.alphabet[a.charCodeAt(i)] = 1;
    const frags = new Set<string>();
    for (const s of this.secrets) for (let i = 0; i + FRAGMENT <= s.length; i++) frags.add(s.slice(i, i + FRAGMENT));
    this.fragments = frags;
    this.longest = held.reduce((n, v) => Math.max(n, v.length), 0);
    this.span = (this.forms[0]?.length ?? 0) * MAX_EXPANSION;
  }

  /** The forms, anchors and fragments lower-cased, for header names (made on first use). */
  private folded: { anchors: readonly string[]; forms: readonly string[]; fragments: ReadonlySet<string> } | undefined;

  /**
   * True when a header name, lower-cased (`lower`), holds a form of a held value in any
   * letter case. Names are case-insensitive and re-cased on the way: Node's parser
   * lower-cases every name of a 101 it hands over, Go's net/http canonicalises the names it
   * writes (`X-Sk-Live-Abc…`), HTTP/2 lower-cases them all. Whole forms always, and with
   * `full` (error answers) the 8-character fragments too, as for values. A name shorter
   * than the shortest form (and than a fragment) costs one comparison.
   */
  nameHolds(lower: string, full: boolean): boolean {
    if (this.shortest === 0) return false;
    const wholeLen = lower.length >= this.shortest;
    const fragLen = full && this.fragments.size > 0 && lower.length >= FRAGMENT;
    if (!wholeLen && !fragLen) return false;
    const f = (this.folded ??= {
      anchors: [...new Set(this.anchors.map((a) => a.toLowerCase()))],
      forms: [...new Set(this.forms.map((a) => a.toLowerCase()))],
      fragments: new Set([...this.fragments].map((a) => a.toLowerCase())),
    });
    if (wholeLen && f.anchors.some((a) => lower.includes(a)) && f.forms.some((a) => lower.includes(a))) return true;
    if (fragLen) for (let i = 0; i + FRAGMENT <= lower.length; i++) if (f.fragments.has(lower.slice(i, i + FRAGMENT))) return true;
    return false;
  }

  /** True when `value` is one of the values this scrubber removes. */
  covers(value: string): boolean {
    return this.values.includes(value);
  }

  /**
   * Every form, whole, literal or escaped. Cheap enough for every response header: text
   * shorter than the shortest form is returned at once (escaping only lengthens), and
   * the decoding pass runs only on text holding `%`, `\` or `&`.
   */
  whole(text: string): string {
    if (this.shortest === 0 || text.length < this.shortest) return text;
    let out = text;
    // Escaped forms first: the escaped view holds literal text too, so a form that is half
    // literal, half escaped (`…AbC%3D`) goes whole rather than leaving its escaped tail.
    if (mayEscape(out)) out = this.escapedOut(out);
    if (this.mayHold(out)) for (const s of this.forms) if (out.includes(s)) out = out.split(s).join(REDACTED);
    return out;
  }

  /**
   * False when `text` holds no anchor, hence no form: the pre-check that keeps whole()
   * at one or four `includes` per value (the value and its base64 middles) instead of
   * one per form.
   */
  private mayHold(text: string): boolean {
    for (const a of this.anchors) if (text.includes(a)) return true;
    return false;
  }

  /** Whole values, fragments and masked forms. */
  full(text: string): string {
    let out = this.whole(text);
    if (this.fragments.size > 0 && out.length >= FRAGMENT) out = this.fragmentsOut(out);
    if (out.includes('*') || out.includes('.') || out.includes('•') || out.includes('…')) out = this.maskedOut(out);
    return out;
  }

  /** Rule 3: each token around a mask run, left to right (the visible text between two runs counts for both). */
  private maskedOut(text: string): string {
    let out = '';
    let from = 0; // end of what is already in `out`
    let lastRunEnd = 0; // the next token starts no earlier
    MASK_RUN.lastIndex = 0;
    for (let m = MASK_RUN.exec(text); m; m = MASK_RUN.exec(text)) {
      // Back to the previous mask run, not to the previous token's end: in `...sk_Za****`
      // the visible `sk_Za` is both the suffix of one masked token and the prefix of the next.
      let start = m.index;
      while (start > lastRunEnd && isTokenChar(text.charCodeAt(start - 1))) start--;
      const runEnd = m.index + m[0].length;
      let end = runEnd;
      while (end < text.length && isTokenChar(text.charCodeAt(end))) end++;
      if (this.isMaskedSecret(text.slice(start, m.index), text.slice(runEnd, end))) {
        // A token sharing its start with the previous redacted one: one marker for both.
        out += start >= from ? text.slice(from, start) + REDACTED : '';
        from = end;
      }
      lastRunEnd = runEnd;
      MASK_RUN.lastIndex = end;
    }
    return out + text.slice(from);
  }

  /** Forms found once escapes are decoded: the escaped text they came from is replaced. */
  private escapedOut(text: string): string {
    // Most escapes in headers are of spaces, `=`, `&` between parameters or non-ASCII:
    // skip decoding unless one stands for a character some view anchor holds, or starts an
    // escape the next level reads.
    ESCAPE.lastIndex = 0;
    let relevant = false;
    for (let m = ESCAPE.exec(text); m && !relevant; m = ESCAPE.exec(text)) {
      const rep = decodeMatch(m);
      const code = rep.charCodeAt(0);
      relevant = rep !== m[0] && code < 128 && (this.alphabet[code] === 1 || startsEscape(rep, text, m.index + m[0].length));
    }
    if (!relevant) return text;
    const plain = decodedView(text);
    if (plain === text || !this.viewAnchors.some((a) => plain.includes(a))) return text;
    const { decoded, starts } = unescapeAll(text)!;
    const hits: [number, number][] = [];
    for (const s of this.viewForms) {
      for (let at = decoded.indexOf(s); at !== -1; at = decoded.indexOf(s, at + s.length)) hits.push([starts[at]!, starts[at + s.length]!]);
    }
    if (hits.length === 0) return text;
    hits.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
    let out = '';
    let from = 0;
    for (const [start, end] of hits) {
      if (end <= from) continue;
      if (start >= from) out += text.slice(from, start) + REDACTED;
      from = end;
    }
    return out + text.slice(from);
  }

  private fragmentsOut(text: string): string {
    let out = '';
    let from = 0;
    for (let i = 0; i + FRAGMENT <= text.length; ) {
      if (!this.fragments.has(text.slice(i, i + FRAGMENT))) {
        i++;
        continue;
      }
      let end = i + FRAGMENT;
      while (end < text.length && this.secrets.some((s) => s.includes(text.slice(i, end + 1)))) end++;
      out += text.slice(from, i) + REDACTED;
      from = i = end;
    }
    return out + text.slice(from);
  }

  private isMaskedSecret(pre: string, post: string): boolean {
    return this.secrets.some((s) => (pre.length >= 3 && s.startsWith(pre)) || (post.length >= 4 && s.endsWith(post)));
  }
}

/**
 * Streaming whole-value scrubbing for bodies too large to hold: keeps back the last
 * `span - 1` bytes of each chunk so a secret (encoded or not) split across chunks is
 * still found. Works on latin1 so every byte round-trips unchanged.
 */
export class ScrubStream extends Transform {
  private carry = '';
  constructor(private readonly scrubber: Scrubber) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const text = this.scrubber.whole(this.carry + chunk.toString('latin1'));
    const keep = Math.max(0, this.scrubber.span - 1);
    const cut = Math.max(0, text.length - keep);
    // Never cut inside a replacement marker: a marker is not a secret prefix.
    this.carry = text.slice(cut);
    done(null, Buffer.from(text.slice(0, cut), 'latin1'));
  }
  override _flush(done: TransformCallback): void {
    done(null, Buffer.from(this.scrubber.whole(this.carry), 'latin1'));
  }
}
