import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { BadRequestError } from '../../core/errors.js';
import { overrideParamName } from './target.js';

/**
 * Method overrides in the request body. An allowed `POST /x` whose body carries
 * `_method=DELETE` runs as `DELETE /x` on the upstreams that read one there:
 *
 * - Rack's MethodOverride (Rails, Sinatra): a POST's form fields, which Rack parses for
 *   `application/x-www-form-urlencoded`, `multipart/*` and a POST with no Content-Type;
 * - Symfony and Laravel (`Request::getMethod()`): a POST's `_method` from PHP's `$_POST`
 *   (urlencoded and multipart forms), and in Laravel from a JSON body's top-level keys
 *   too (`getInputSource()`); Laravel turns the override on by default;
 * - Spring's HiddenHttpMethodFilter: a POST's servlet parameters (forms).
 *
 * So a POST's body of one of those syntaxes is read as it streams to the upstream, and a
 * field named as an override (the query's names and spellings: target.ts
 * overrideParamName) refuses the request, 400 `leash_bad_request`, like one in the query.
 * The bytes that would complete the name are never sent: each chunk is looked at before
 * it is passed on, and on a hit the upstream request is cut short, so the upstream only
 * ever holds an incomplete request that it cannot run. Nothing is buffered beyond one
 * field name or one multipart part header. Other bodies, and other methods, stream
 * untouched; so do compressed bodies (none of those readers decompresses a request).
 */
export type OverrideSyntax = 'form' | 'multipart' | 'json';

/** Longest field name kept: an override name is at most 20 characters, so a longer name can only be one by a `[` or NUL cut within it. */
const NAME_CAP = 64;
/** Longest multipart part header block read; a longer one cannot be inspected and is refused. */
export const MAX_PART_HEADER = 16 * 1024;

/**
 * Pure: the syntax in which the upstream would look for an override in this request's
 * body, an error for a multipart body whose boundary is missing or ambiguous, or
 * undefined (no override can be read from it: not a POST, no body, another type).
 */
export function overrideSyntax(method: string, headers: IncomingHttpHeaders): OverrideSyntax | BadRequestError | undefined {
  const plan = classify(method, headers);
  return plan === undefined || plan instanceof BadRequestError ? plan : plan.syntax;
}

/** overrideSyntax, with the multipart boundary it parsed (once) for the scanner. */
function classify(method: string, headers: IncomingHttpHeaders): { syntax: OverrideSyntax; boundary?: string } | BadRequestError | undefined {
  if (method !== 'POST') return undefined;
  const type = headers['content-type'];
  // Rack parses a POST without a media type as a form.
  if (type === undefined || /^[\s;,]*$/.test(type.split(/[;,]/, 1)[0]!)) return { syntax: 'form' };
  const t = type.toLowerCase();
  if (t.includes('form-urlencoded')) return asciiNames(t) ?? { syntax: 'form' };
  if (t.trimStart().startsWith('multipart/')) {
    const boundary = boundaryOf(type);
    return boundary instanceof BadRequestError ? boundary : (asciiNames(t) ?? { syntax: 'multipart', boundary });
  }
  if (t.includes('json')) return { syntax: 'json' };
  return undefined;
}

/**
 * Charsets in which the bytes of an ASCII name are that name and no other bytes decode to
 * ASCII: the scanners read names as bytes, so only these can be checked.
 */
const ASCII_NAMES = /^(?:utf-?8|(?:us-)?ascii|iso[-_]?8859[-_]\d{1,2}|latin-?\d{1,2}|(?:windows|cp)-?125\d)$/;

/**
 * An error when a (lower-cased) form or multipart Content-Type names a charset outside
 * ASCII_NAMES. A servlet container (Tomcat, for Spring's HiddenHttpMethodFilter) decodes
 * field names and part headers in the request's charset: `_method` in UTF-16, EBCDIC or
 * ISO-2022-JP is not the bytes the scanners look for.
 */
function asciiNames(t: string): BadRequestError | undefined {
  if (!t.includes('charset')) return undefined;
  for (const m of t.matchAll(/charset\s*=\s*"?([^";,\s]*)/g)) {
    if (!ASCII_NAMES.test(m[1]!)) return new BadRequestError('a form or multipart body in this charset cannot be inspected for a method override: send it as utf-8 (or another ASCII-compatible charset)');
  }
  return undefined;
}

/** The multipart boundary of a Content-Type, or the error when it has none or more than one. */
function boundaryOf(type: string): string | BadRequestError {
  // Parsers find the boundary differently (Rack: the last `boundary=` anywhere, greedy):
  // one that leash and the upstream could read differently is refused, not guessed.
  if ((type.match(/boundary\s*=/gi) ?? []).length !== 1) return new BadRequestError('a multipart content-type must name exactly one boundary');
  const m = /;\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]*))\s*(?:;|$)/i.exec(type);
  // PHP takes the first `=` after the first "boundary" anywhere (strstr, case-sensitive):
  // `boundaryx=X; boundary=Y` is X there. That first one must be the parameter's name.
  const php = type.indexOf('boundary');
  if (m && php !== -1 && php !== type.toLowerCase().indexOf('boundary', m.index)) {
    return new BadRequestError('a multipart content-type must name exactly one boundary');
  }
  const boundary = m?.[1] ?? m?.[2];
  // RFC 2046 §5.1.1: 1-70 of these characters; anything else is read differently by different
  // parsers. Not `,` although RFC 2046 allows it: Rack (`[^";,]+`, quoted or not) and Commons
  // FileUpload (`;` and `,` separate parameters) end the boundary there.
  if (boundary === undefined || !/^[0-9A-Za-z'()+_\-./:=? ]{0,69}[0-9A-Za-z'()+_\-./:=?]$/.test(boundary)) {
    return new BadRequestError('a multipart content-type needs one boundary of RFC 2046 characters other than "," (1-70)');
  }
  return boundary;
}

/** Reads a body chunk by chunk; `push` and `end` give the override's canonical name at the first one found. */
export interface OverrideScanner {
  push(chunk: Buffer): string | BadRequestError | undefined;
  end(): string | BadRequestError | undefined;
}

/** The scanner for this request's body (overrideSyntax decides), the error that refuses it, or undefined: nothing to read. */
export function bodyScanner(method: string, headers: IncomingHttpHeaders): OverrideScanner | BadRequestError | undefined {
  const plan = classify(method, headers);
  if (plan === undefined || plan instanceof BadRequestError) return plan;
  if (plan.syntax === 'form') return new FormScanner();
  if (plan.syntax === 'json') return new JsonScanner();
  return new MultipartScanner(plan.boundary!);
}

/** The error that refuses a request whose body names an override. */
export const bodyOverrideError = (name: string, route: string | undefined): BadRequestError =>
  new BadRequestError(`the request body names a method override ("${name}"): send the method itself`, { route });

const hex = (b: number): number => (b >= 48 && b <= 57 ? b - 48 : b >= 65 && b <= 70 ? b - 55 : b >= 97 && b <= 102 ? b - 87 : -1);

/**
 * `application/x-www-form-urlencoded` (and a POST without a type): field names between
 * `&`/`;` and `=`, decoded byte by byte as PHP and Rack do (`+`, `%XX`, `%uXXXX`; a broken
 * escape kept as sent), leading spaces dropped, a run of leading brackets kept to three (Rack 2
 * drops them all), at most NAME_CAP characters kept.
 */
class FormScanner implements OverrideScanner {
  private inName = true;
  private name = '';
  /** The name so far is only brackets (none, or up to three kept). */
  private leadingBrackets = true;
  /** A pending escape across reads: '%', '%5', '%u00'… */
  private esc = '';

  push(buf: Buffer): string | undefined {
    let i = 0;
    while (i < buf.length) {
      if (!this.inName) {
        // A value: skip to the next separator.
        const amp = buf.indexOf(0x26, i);
        const semi = buf.indexOf(0x3b, i);
        const next = amp === -1 ? semi : semi === -1 ? amp : Math.min(amp, semi);
        if (next === -1) return undefined;
        this.inName = true;
        i = next + 1;
        continue;
      }
      const b = buf[i++]!;
      if (b === 0x26 /* & */ || b === 0x3b /* ; */ || b === 0x3d /* = */) {
        const hit = this.endName();
        if (hit !== undefined) return hit;
        if (b === 0x3d) this.inName = false;
        continue;
      }
      this.feed(b);
    }
    return undefined;
  }

  end(): string | undefined {
    return this.inName ? this.endName() : undefined;
  }

  private endName(): string | undefined {
    this.flushEscape();
    const hit = this.name === '' ? undefined : overrideParamName(this.name);
    this.name = '';
    this.leadingBrackets = true;
    return hit;
  }

  private feed(b: number): void {
    if (this.esc === '') {
      if (b === 0x25 /* % */) this.esc = '%';
      else this.emit(b === 0x2b /* + */ ? ' ' : String.fromCharCode(b));
      return;
    }
    const isU = this.esc.length === 1 && (b === 0x75 || b === 0x55); // %u / %U
    if (!isU && hex(b) === -1) {
      // A broken escape is taken as sent; this byte starts afresh.
      this.flushEscape();
      this.feed(b);
      return;
    }
    this.esc += String.fromCharCode(b);
    const unicode = this.esc[1] === 'u' || this.esc[1] === 'U';
    if (this.esc.length === (unicode ? 6 : 3)) {
      const code = parseInt(this.esc.slice(unicode ? 2 : 1), 16);
      this.esc = '';
      this.emit(String.fromCharCode(code));
    }
  }

  private flushEscape(): void {
    const pending = this.esc;
    this.esc = '';
    for (let k = 0; k < pending.length; k++) this.emit(pending[k]!);
  }

  private emit(c: string): void {
    if (this.name === '' && c === ' ') return;
    if (this.leadingBrackets) {
      // Rack 2 drops any number of leading brackets (overrideParamName): past the third,
      // which already keeps a name's canonical form from starting like an override (`___`),
      // one more changes no answer, so it is not kept and cannot push the rest past NAME_CAP.
      if (c !== '[' && c !== ']') this.leadingBrackets = false;
      else if (this.name.length >= 3) return;
    }
    if (this.name.length < NAME_CAP) this.name += c;
  }
}

/**
 * `multipart/*`: the `name` parameter of every part's headers, and its `Content-ID` (the
 * block after each `--boundary` up to its CRLF CRLF: headerEnd), quoted (backslash escapes undone)
 * or not, `name*=` percent-decoded. Part bodies are only searched for the next boundary.
 */
class MultipartScanner implements OverrideScanner {
  private readonly delimiter: Buffer;
  /** Bytes kept from the last read: the start of a delimiter, or of what follows one. */
  private carry: Buffer = Buffer.alloc(0);
  /** The part header block being read, or undefined between parts. */
  private header: string | undefined;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`--${boundary}`, 'latin1');
  }

  push(chunk: Buffer): string | BadRequestError | undefined {
    const data = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
    this.carry = Buffer.alloc(0);
    let pos = 0;
    while (pos < data.length) {
      if (this.header !== undefined) {
        const before = this.header.length;
        this.header += data.toString('latin1', pos, Math.min(data.length, pos + MAX_PART_HEADER + 4));
        const endAt = headerEnd(this.header);
        if (endAt === -1) {
          // The whole rest of this read is in `header` (up to the cap, which is then exceeded).
          if (this.header.length > MAX_PART_HEADER) return new BadRequestError(`a multipart part header longer than ${MAX_PART_HEADER} bytes cannot be inspected`);
          return undefined;
        }
        const hit = partName(this.header.slice(0, endAt));
        if (hit !== undefined) return hit;
        // The blank line may have begun in the last read (endAt < before).
        pos += Math.max(0, endAt - before);
        this.header = undefined;
        continue;
      }
      const at = data.indexOf(this.delimiter, pos);
      if (at === -1) {
        // Keep what could be the start of a delimiter split across reads.
        this.carry = Buffer.from(data.subarray(Math.max(pos, data.length - this.delimiter.length - 1)));
        return undefined;
      }
      const after = at + this.delimiter.length;
      if (after + 2 > data.length) {
        // Whether this is the closing delimiter (`--` follows) shows in the next read.
        this.carry = Buffer.from(data.subarray(at));
        return undefined;
      }
      if (data[after] === 0x2d && data[after + 1] === 0x2d) {
        pos = after + 2; // the closing delimiter: what follows is the epilogue
        continue;
      }
      this.header = '';
      pos = after;
    }
    return undefined;
  }

  end(): string | BadRequestError | undefined {
    // A header block the body ended in: its names count all the same.
    return this.header === undefined ? undefined : partName(this.header);
  }
}

/**
 * Index of the end of a part header block, or -1: its CRLF CRLF, the end Rack, Commons
 * FileUpload and busboy look for. PHP also ends one at a bare-LF blank line, but reading
 * only up to that hid from leash the names Rack still reads after it, up to CRLF CRLF; the
 * longer block holds PHP's names too (a bare-LF-only body is read as one header block).
 */
function headerEnd(h: string): number {
  return h.indexOf('\r\n\r\n');
}

/** A `name` parameter: double-quoted, single-quoted (PHP's php_ap_getword_conf takes `'` as a quote too) or bare. */
const NAME_PARAM = /\bname\s*(\*?)\s*=\s*(?:"((?:\\.|[^"\\])*)"?|'((?:\\.|[^'\\])*)'?|([^;\s]*))/gi;

/** Where a bare parameter value ends for Rack (its TOKEN: `[^\s()<>,;:\\"\/\[\]?=]+`; `[` is overrideParamName's). */
const RACK_TOKEN_END = /[()<>,:\\"/?=]/;
/** Rack's MULTIPART_CONTENT_ID, unanchored as Rack's is. */
const CONTENT_ID = /content-id:\s*([^\r\n]*)/gi;

/** The override a part header block names, if any. */
function partName(block: string): string | undefined {
  for (const m of block.matchAll(NAME_PARAM)) {
    const quoted = m[2] ?? m[3];
    let value = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : (m[4] ?? '');
    if (m[1] === '*') {
      // RFC 8187: charset'language'percent-encoded
      value = value.slice(value.lastIndexOf("'") + 1).replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    }
    // A bare value as Rack's TOKEN reads it, too: it ends at `,` `/` `:` `(` `=`… as well.
    const hit = overrideParamName(value) ?? (quoted === undefined ? overrideParamName(value.split(RACK_TOKEN_END, 1)[0]!) : undefined);
    if (hit !== undefined) return hit;
  }
  // Rack names a part by its Content-ID when Content-Disposition gives no name.
  for (const m of block.matchAll(CONTENT_ID)) {
    const hit = overrideParamName(m[1]!.trim());
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/**
 * JSON: the top-level object's keys (Laravel's `$request->request` is the decoded body),
 * JSON escapes undone, at most NAME_CAP characters kept. Strings that are not top-level
 * keys are skipped by searching for their closing quote; only the bytes between values
 * are looked at one by one. Reading stops once the top-level value is not an object or
 * has ended.
 */
const structural = (chars: string): Uint8Array => {
  const t = new Uint8Array(256);
  for (const c of chars) t[c.charCodeAt(0)] = 1;
  return t;
};
/** Bytes that matter between values in the top-level object, and deeper. */
const AT_TOP = structural('"{}[],');
const NESTED = structural('"{}[]');

class JsonScanner implements OverrideScanner {
  private depth = 0;
  private done = false;
  private inString = false;
  /** The byte after a backslash in a string is taken as is. */
  private escaped = false;
  /** A top-level key is expected next (after `{` or a `,` at depth 1). */
  private keyNext = false;
  /** The top-level key being read, or undefined. */
  private key: string | undefined;
  /** A pending `\uXXXX` in a key: the hex digits read so far. */
  private unicode: string | undefined;

  push(buf: Buffer): string | undefined {
    let i = 0;
    const len = buf.length;
    while (i < len && !this.done) {
      if (this.inString) {
        if (this.key !== undefined) {
          const r = this.readKey(buf, i);
          if (typeof r === 'string') return r;
          i = r;
        } else i = this.skipString(buf, i);
        continue;
      }
      if (this.depth > 0) {
        // Between values: only quotes, brackets and (at depth 1) commas matter.
        const table = this.depth === 1 ? AT_TOP : NESTED;
        while (i < len && table[buf[i]!] === 0) i++;
        if (i === len) break;
      }
      const b = buf[i++]!;
      if (b === 0x22 /* " */) {
        this.inString = true;
        if (this.depth === 1 && this.keyNext) this.key = '';
        this.keyNext = false;
      } else if (b === 0x7b /* { */ || b === 0x5b /* [ */) {
        if (this.depth === 0 && b === 0x5b) this.done = true;
        this.depth++;
        if (this.depth === 1) this.keyNext = true;
      } else if (b === 0x7d /* } */ || b === 0x5d /* ] */) {
        this.depth--;
        if (this.depth <= 0) this.done = true;
      } else if (b === 0x2c /* , */) {
        if (this.depth === 1) this.keyNext = true;
      } else if (this.depth === 0 && b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0xef && b !== 0xbb && b !== 0xbf) {
        this.done = true; // not an object (a BOM and whitespace may lead)
      }
    }
    return undefined;
  }

  end(): undefined {
    return undefined;
  }

  /** Skips a string's content from `i`; returns where reading goes on. */
  private skipString(buf: Buffer, i: number): number {
    if (this.escaped) {
      this.escaped = false;
      i++;
    }
    for (;;) {
      const q = buf.indexOf(0x22, i);
      const end = q === -1 ? buf.length : q;
      let run = 0;
      while (end - run - 1 >= i && buf[end - run - 1] === 0x5c) run++;
      if (q === -1) {
        this.escaped = run % 2 === 1;
        return buf.length;
      }
      if (run % 2 === 0) {
        this.inString = false;
        return q + 1;
      }
      i = q + 1;
    }
  }

  /** Reads a top-level key from `i`; the override's name when the key ends as one, else where reading goes on. */
  private readKey(buf: Buffer, i: number): number | string {
    while (i < buf.length) {
      const b = buf[i++]!;
      if (this.unicode !== undefined) {
        this.unicode += String.fromCharCode(b);
        if (this.unicode.length === 4) {
          const code = parseInt(this.unicode, 16);
          this.unicode = undefined;
          this.append(Number.isNaN(code) ? '\ufffd' : String.fromCharCode(code));
        }
      } else if (this.escaped) {
        this.escaped = false;
        if (b === 0x75 /* u */) this.unicode = '';
        else this.append(String.fromCharCode(b));
      } else if (b === 0x5c) this.escaped = true;
      else if (b === 0x22) {
        const hit = overrideParamName(this.key!);
        this.key = undefined;
        this.inString = false;
        if (hit !== undefined) return hit;
        return i;
      } else this.append(String.fromCharCode(b));
    }
    return i;
  }

  private append(c: string): void {
    if (this.key!.length < NAME_CAP) this.key += c;
  }
}

/**
 * The body on its way to the upstream, each chunk looked at before it is passed on. On an
 * override (or an uninspectable multipart header), `refuse` is called once and nothing
 * more is passed on; the caller cuts the upstream request.
 */
export class OverrideGuard extends Transform {
  private refused = false;

  constructor(
    private readonly scanner: OverrideScanner,
    private readonly refuse: (found: string | BadRequestError) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.refused) return done();
    const hit = this.look(() => this.scanner.push(chunk));
    if (hit !== undefined) {
      this.refused = true;
      this.refuse(hit);
      return done();
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.refused) return; // never ends: the upstream request is cut, not completed
    const hit = this.look(() => this.scanner.end());
    if (hit === undefined) return done();
    this.refused = true;
    this.refuse(hit);
  }

  /**
   * A scanner that throws refuses the request (fail closed) rather than erroring this
   * stream, which nothing listens to: an 'error' here would end the process. What it threw
   * is not quoted (it may hold the body).
   */
  private look(scan: () => string | BadRequestError | undefined): string | BadRequestError | undefined {
    try {
      return scan();
    } catch {
      return new BadRequestError('the request body could not be inspected for a method override');
    }
  }
}

/** A whole body, already read (the request-body phase): the override it names, an error, or undefined. */
export function overrideInBody(method: string, headers: IncomingHttpHeaders, body: Buffer): string | BadRequestError | undefined {
  const scanner = bodyScanner(method, headers);
  if (scanner === undefined || scanner instanceof BadRequestError) return scanner;
  return scanner.push(body) ?? scanner.end();
}
