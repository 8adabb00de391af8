import { describe, expect, it } from 'vitest';
import { reasonPhrase, relayHeaders, scrubUpgradeHeaders, statusProblem, transferCodingProblem } from '../../src/sidecar/proxy/response.js';
import { Scrubber } from '../../src/sidecar/proxy/scrub.js';

/** The pure decisions of the response path (the process-level sweep is test/security/response-fuzz.test.ts). */
const SECRET = 'sk-unit-response-0123456789abcdef';
const scrubber = new Scrubber([SECRET]);
const full = (_lower: string, v: string) => scrubber.full(v);

describe('statusProblem', () => {
  it('accepts 200–599 only', () => {
    for (const s of [200, 204, 299, 304, 418, 599]) expect(statusProblem(s)).toBeUndefined();
    for (const s of [0, 1, 99, 100, 103, 199, 600, 999, 1000, -1]) expect(statusProblem(s)).toBeDefined();
    expect(statusProblem(101)).toMatch(/101/);
    expect(statusProblem(undefined)).toBeDefined();
    expect(statusProblem(200.5)).toBeDefined();
  });
});

describe('reasonPhrase', () => {
  it('is the standard phrase, or a fixed fallback', () => {
    expect(reasonPhrase(401)).toBe('Unauthorized');
    expect(reasonPhrase(200)).toBe('OK');
    expect(reasonPhrase(299)).toBe('Unknown');
  });
});

describe('transferCodingProblem', () => {
  const te = (...values: string[]) => values.flatMap((v) => ['Transfer-Encoding', v]);
  it('accepts no transfer-coding or exactly chunked', () => {
    expect(transferCodingProblem([])).toBeUndefined();
    expect(transferCodingProblem(te('chunked'))).toBeUndefined();
    expect(transferCodingProblem(te(' Chunked '))).toBeUndefined();
  });
  it('refuses any other coding, a repeated chunked, or chunked split over two lines', () => {
    for (const v of ['gzip, chunked', 'gzip', 'identity', 'chunked, gzip', 'chunked, chunked', 'x-custom']) expect(transferCodingProblem(te(v)), v).toBeDefined();
    expect(transferCodingProblem(te('chunked', 'chunked'))).toBeDefined();
  });
});

describe('relayHeaders', () => {
  it('skips hop-by-hop and x-leash-* names; drops bad or secret-bearing names and unwritable values; keeps the rest in order', () => {
    const raw = [
      'Content-Type', 'text/plain',
      'Connection', 'close',
      'X-Leash-Error', 'leash_denied',
      `x-${SECRET}`, '1',
      'x bad', '1',
      'x-ctl', 'a\u0001b',
      'x-del', 'a\u007fb',
      'x-obs', 'caf\u00e9',
      'Set-Cookie', `a=${SECRET}`,
      'Set-Cookie', 'b=2',
    ];
    const out = relayHeaders(raw, new Set(['connection']), scrubber, full);
    expect(out.headers).toEqual(['Content-Type', 'text/plain', 'x-obs', 'caf\u00e9', 'Set-Cookie', 'a=[REDACTED]', 'Set-Cookie', 'b=2']);
    expect(out.dropped).toBe(4);
  });

  it('a value that becomes unwritable after rewriting is dropped too', () => {
    const out = relayHeaders(['x-a', 'fine'], new Set(), scrubber, () => 'bad\r\nx-injected: 1');
    expect(out.headers).toEqual([]);
    expect(out.dropped).toBe(1);
  });
});

describe('scrubUpgradeHeaders', () => {
  it('scrubs every element of an array value, removes secret-named, non-token, unwritable and x-leash-* headers', () => {
    const headers: Record<string, string | string[] | undefined> = {
      upgrade: 'websocket',
      connection: 'Upgrade',
      'set-cookie': [`a=${SECRET}`, `b=${SECRET.slice(2, 14)}`],
      [`x-${SECRET}`]: '1',
      'x bad': '1',
      'x-del': 'a\u007f',
      'x-leash-error': 'leash_denied',
      'x-plain': 'v',
    };
    expect(scrubUpgradeHeaders(headers, scrubber)).toBe(3);
    expect(headers).toEqual({ upgrade: 'websocket', connection: 'Upgrade', 'set-cookie': ['a=[REDACTED]', 'b=[REDACTED]'], 'x-plain': 'v' });
  });
});
