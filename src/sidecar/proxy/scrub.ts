import { Transform, type TransformCallback } from 'node:stream';

/**
 * Removes held secrets echoed by an upstream (docs/secret-hygiene.md). OpenAI, for one,
 * answers a bad key with `Incorrect API key provided: sk-…` — whole, or masked as
 * `sk-proj-abc*****wxyz`. The rule, for each held secret and the forms leash sends it in:
 *  1. the whole value is replaced with `[REDACTED]`;
 *  2. in full scrubbing, any run of ≥ FRAGMENT characters that appears in a secret is too;
 *  3. in full scrubbing, a masked token (`*`, `•`, `…` or `...` runs) whose visible prefix
 *     (≥ 3 chars) starts a secret or whose visible suffix (≥ 4 chars) ends one.
 * Full scrubbing is used on headers of error answers and error bodies up to 64 KiB; the
 * fast `whole` form on every other response header and on larger error bodies (streamed).
 */
export const REDACTED = '[REDACTED]';
const FRAGMENT = 8;
const MASKED = /[A-Za-z0-9_-]*(?:[*•]{3,}|…+|\.{3,})[A-Za-z0-9_-]*/g;

export class Scrubber {
  private readonly secrets: readonly string[];
  private readonly fragments: ReadonlySet<string>;
  readonly longest: number;

  /** The values this scrubber was built from. */
  readonly values: readonly string[];

  constructor(values: readonly string[]) {
    this.values = values;
    this.secrets = [...new Set(values.filter((v) => v.length > 0))].sort((a, b) => b.length - a.length);
    const frags = new Set<string>();
    for (const s of this.secrets) for (let i = 0; i + FRAGMENT <= s.length; i++) frags.add(s.slice(i, i + FRAGMENT));
    this.fragments = frags;
    this.longest = this.secrets[0]?.length ?? 0;
  }

  /** True when `value` is one of the secrets this scrubber removes. */
  covers(value: string): boolean {
    return this.secrets.includes(value);
  }

  /** Whole-value replacement only: cheap enough for every response header. */
  whole(text: string): string {
    let out = text;
    for (const s of this.secrets) if (out.includes(s)) out = out.split(s).join(REDACTED);
    return out;
  }

  /** Whole values, fragments and masked forms. */
  full(text: string): string {
    let out = this.whole(text);
    if (this.fragments.size > 0 && out.length >= FRAGMENT) out = this.fragmentsOut(out);
    if (out.includes('*') || out.includes('.') || out.includes('•') || out.includes('…')) {
      out = out.replace(MASKED, (token) => (this.isMaskedSecret(token) ? REDACTED : token));
    }
    return out;
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

  private isMaskedSecret(token: string): boolean {
    const pre = /^[A-Za-z0-9_-]*/.exec(token)![0];
    const post = /[A-Za-z0-9_-]*$/.exec(token)![0];
    return this.secrets.some((s) => (pre.length >= 3 && s.startsWith(pre)) || (post.length >= 4 && s.endsWith(post)));
  }
}

/**
 * Streaming whole-value scrubbing for bodies too large to hold: keeps back the last
 * `longest - 1` bytes of each chunk so a secret split across chunks is still found.
 * Works on latin1 so every byte round-trips unchanged.
 */
export class ScrubStream extends Transform {
  private carry = '';
  constructor(private readonly scrubber: Scrubber) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const text = this.scrubber.whole(this.carry + chunk.toString('latin1'));
    const keep = Math.max(0, this.scrubber.longest - 1);
    const cut = Math.max(0, text.length - keep);
    // Never cut inside a replacement marker: a marker is not a secret prefix.
    this.carry = text.slice(cut);
    done(null, Buffer.from(text.slice(0, cut), 'latin1'));
  }
  override _flush(done: TransformCallback): void {
    done(null, Buffer.from(this.scrubber.whole(this.carry), 'latin1'));
  }
}
