import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { REDACTED, ScrubStream, Scrubber } from '../../src/sidecar/proxy/scrub.js';

const SECRET = 'sk-proj-abcdefghijklmnopqrstuvwxyz0123';

describe('Scrubber.whole', () => {
  it('replaces every whole occurrence of every held value', () => {
    const s = new Scrubber([SECRET, 'other-secret-value']);
    expect(s.whole(`key ${SECRET} and ${SECRET}; other-secret-value.`)).toBe(`key ${REDACTED} and ${REDACTED}; ${REDACTED}.`);
  });

  it('leaves fragments alone (that is full()’s job) and text without secrets unchanged', () => {
    const s = new Scrubber([SECRET]);
    expect(s.whole('sk-proj-abcdefghij')).toBe('sk-proj-abcdefghij');
    expect(s.whole('nothing to see')).toBe('nothing to see');
  });

  it('prefers the longest value when one secret contains another', () => {
    const s = new Scrubber(['abcdefgh', 'abcdefgh-long-version']);
    expect(s.whole('x abcdefgh-long-version y abcdefgh z')).toBe(`x ${REDACTED} y ${REDACTED} z`);
  });

  it('ignores empty values and reports the longest length', () => {
    const s = new Scrubber(['', 'short-1234', SECRET]);
    expect(s.longest).toBe(SECRET.length);
    expect(s.whole('abc')).toBe('abc');
    expect(new Scrubber([]).whole('abc')).toBe('abc');
    expect(new Scrubber([]).longest).toBe(0);
  });
});

describe('Scrubber.full', () => {
  const s = new Scrubber([SECRET]);

  it('replaces the whole value', () => {
    expect(s.full(`Incorrect API key provided: ${SECRET}.`)).toBe(`Incorrect API key provided: ${REDACTED}.`);
  });

  it('replaces any run of ≥ 8 characters of a secret, wherever it appears', () => {
    for (const frag of [SECRET.slice(0, 8), SECRET.slice(5, 13), SECRET.slice(-8), SECRET.slice(3, 30)]) {
      const out = s.full(`echo: [${frag}] end`);
      expect(out, frag).toBe(`echo: [${REDACTED}] end`);
    }
  });

  it('leaves a 7-character overlap alone (no false positive on short shared text)', () => {
    expect(s.full(`model abcdefg is fine`)).toBe('model abcdefg is fine');
    expect(s.full(`see sk-proj docs`)).toBe('see sk-proj docs');
  });

  it('removes masked forms by visible prefix or suffix', () => {
    const masked = ['sk-proj-abc*****0123', 'sk-proj-abc•••••0123', 'sk-…0123', 'sk-...0123', 'sk-p****', '****wxyz0123', '...z0123'];
    for (const m of masked) {
      const out = s.full(`Incorrect API key provided: ${m}. You can find your API key at https://platform.openai.com/account/api-keys.`);
      expect(out, m).toContain(REDACTED);
      expect(out, m).not.toContain(m);
      expect(out, m).not.toMatch(/sk-|0123/);
      expect(out, m).toContain('https://platform.openai.com/account/api-keys.');
    }
  });

  it('keeps masked tokens that match no secret, and ordinary prose with ellipses and asterisks', () => {
    const texts = [
      'Incorrect API key provided: ab*****yz. You can find your API key at https://platform.openai.com/account/api-keys.',
      'Loading... please wait… **bold** text',
      'rate limited: retry in 20s...',
      'sk-live-zzz*****9999',
      '{"error":{"message":"The model `gpt-4o` does not exist","type":"invalid_request_error"}}',
    ];
    for (const t of texts) expect(s.full(t), t).toBe(t);
  });

  it('is a no-op with no secrets held', () => {
    const empty = new Scrubber([]);
    expect(empty.full('sk-***abc something...')).toBe('sk-***abc something...');
  });

  it('scrubs every held form (raw, URL-encoded, base64 basic) when given them', () => {
    const secret = 'tok/with+special=chars==';
    const forms = [secret, encodeURIComponent(secret), Buffer.from(`svc:${secret}`).toString('base64')];
    const sc = new Scrubber(forms);
    for (const f of forms) expect(sc.full(`got ${f}!`)).toBe(`got ${REDACTED}!`);
  });
});

async function runThrough(scrubber: Scrubber, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const stream = Readable.from(chunks, { objectMode: false }).pipe(new ScrubStream(scrubber));
  for await (const c of stream) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe('ScrubStream', () => {
  const scrubber = new Scrubber([SECRET]);
  const text = `{"error":"bad key ${SECRET}","again":"${SECRET}"} tail`;
  const expected = `{"error":"bad key ${REDACTED}","again":"${REDACTED}"} tail`;

  it('removes a secret split across two chunks at every offset', async () => {
    const buf = Buffer.from(text);
    for (let i = 0; i <= buf.length; i++) {
      const out = await runThrough(scrubber, [buf.subarray(0, i), buf.subarray(i)]);
      expect(out.toString(), `split at ${i}`).toBe(expected);
    }
  });

  it('removes a secret split across three chunks at every pair of offsets inside it', async () => {
    const buf = Buffer.from(`xx${SECRET}yy`);
    for (let i = 1; i < buf.length; i++) {
      for (let j = i; j < buf.length; j++) {
        const out = await runThrough(scrubber, [buf.subarray(0, i), buf.subarray(i, j), buf.subarray(j)]);
        expect(out.toString(), `${i}/${j}`).toBe(`xx${REDACTED}yy`);
      }
    }
  });

  it('one byte at a time, with several secrets of different lengths', async () => {
    const sc = new Scrubber([SECRET, 'short-secret']);
    const buf = Buffer.from(`a short-secret b ${SECRET} c short-secret`);
    const out = await runThrough(sc, [...buf].map((b) => Buffer.from([b])));
    expect(out.toString()).toBe(`a ${REDACTED} b ${REDACTED} c ${REDACTED}`);
  });

  it('passes bytes through unchanged, including multi-byte UTF-8 split across chunks and binary', async () => {
    const buf = Buffer.concat([Buffer.from('héllo ✓ 🎉 '), Buffer.from([0, 255, 128, 10]), Buffer.from(' done')]);
    for (let i = 0; i <= buf.length; i++) {
      const out = await runThrough(scrubber, [buf.subarray(0, i), buf.subarray(i)]);
      expect(out.equals(buf), `split at ${i}`).toBe(true);
    }
  });

  it('holds back no more than it must: output equals input when nothing matches', async () => {
    const big = Buffer.from('z'.repeat(200_000));
    const chunks = [];
    for (let i = 0; i < big.length; i += 16_384) chunks.push(big.subarray(i, i + 16_384));
    expect((await runThrough(scrubber, chunks)).equals(big)).toBe(true);
  });
});
