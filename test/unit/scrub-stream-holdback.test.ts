import { once } from 'node:events';
import { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { REDACTED, ScrubStream, Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * The streamed scrubbing of error bodies over 64 KiB (docs/secret-hygiene.md): each chunk
 * is passed on as it comes except the last `span - 1` characters, held back so an echo cut
 * by the chunk end is still found; bytes pass through unchanged (latin1 round trip).
 */
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-proj-Ab3Cd4Ef5Gh6Ij7Kl8';

describe('ScrubStream passes a chunk on at once, all but what it must hold back', () => {
  it('after one large chunk the agent has all of it but the last span − 1 characters; the rest comes at the end', async () => {
    const scrubber = new Scrubber([SECRET]);
    const stream = new ScrubStream(scrubber);
    const got: Buffer[] = [];
    stream.on('data', (c: Buffer) => got.push(c));
    const size = scrubber.span * 3;
    const chunk = Buffer.alloc(size, 'z');
    stream.write(chunk);
    await tick();
    expect(Buffer.concat(got).length).toBe(size - (scrubber.span - 1));
    stream.write(chunk);
    await tick();
    expect(Buffer.concat(got).length).toBe(2 * size - (scrubber.span - 1));
    stream.end();
    await once(stream, 'end');
    expect(Buffer.concat(got).equals(Buffer.concat([chunk, chunk]))).toBe(true);
  });
});

async function runThrough(scrubber: Scrubber, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks, { objectMode: false }).pipe(new ScrubStream(scrubber))) out.push(c as Buffer);
  return Buffer.concat(out);
}

describe('ScrubStream keeps every byte of a long body', () => {
  it('UTF-8 text and bytes 0x80–0xFF, several times the hold-back, come out byte for byte; an echo in it is replaced', async () => {
    const scrubber = new Scrubber([SECRET]);
    const unit = Buffer.concat([Buffer.from('{"message":"café — ✓ 🎉 ünïcödé "}\n'), Buffer.from([0x80, 0xa0, 0xc3, 0xff, 0xfe, 0x0a])]);
    const parts: Buffer[] = [];
    while (Buffer.concat(parts).length < scrubber.span * 4) parts.push(unit);
    const body = Buffer.concat(parts);
    for (const size of [1000, 4096, body.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < body.length; i += size) chunks.push(body.subarray(i, i + size));
      expect((await runThrough(scrubber, chunks)).equals(body), `chunks of ${size}`).toBe(true);
    }
    const withEcho = Buffer.concat([body, Buffer.from(` key ${SECRET} `), body]);
    const expected = Buffer.concat([body, Buffer.from(` key ${REDACTED} `), body]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < withEcho.length; i += 1500) chunks.push(withEcho.subarray(i, i + 1500));
    expect((await runThrough(scrubber, chunks)).equals(expected)).toBe(true);
  });
});
