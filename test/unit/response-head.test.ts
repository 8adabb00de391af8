import { describe, expect, it } from 'vitest';
import { planResponse, reasonPhrase, relayHeaders, scrubUpgradeHeaders, statusProblem, transferCodingProblem } from '../../src/sidecar/proxy/response.js';
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

describe('planResponse (the response-head phase)', () => {
  const head = (statusCode: number, raw: string[]) => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < raw.length; i += 2) headers[raw[i]!.toLowerCase()] = raw[i + 1]!;
    return { statusCode, headers, rawHeaders: raw };
  };
  const local = (loc: string) => `LOCAL(${loc})`;
  const plan = (status: number, raw: string[], method = 'GET') => planResponse(head(status, raw), method, scrubber, local);

  it('relays a success piped, with the standard reason and the upstream framing kept', () => {
    const p = plan(200, ['Content-Type', 'application/json', 'Content-Length', '2', 'Connection', 'keep-alive', 'X-Leash-Error', 'forged']);
    expect(p).toEqual({ kind: 'relay', status: 200, reason: 'OK', headers: ['Content-Type', 'application/json', 'Content-Length', '2'], dropped: 0, body: 'pipe' });
  });

  it('an event stream is flushed first; an error is scrubbed whatever its type, its framing redone by leash', () => {
    expect(plan(200, ['Content-Type', 'text/event-stream'])).toMatchObject({ kind: 'relay', body: 'flush' });
    const err = plan(401, ['Content-Type', 'text/event-stream', 'Content-Length', '10', 'Content-Encoding', 'gzip', 'WWW-Authenticate', `Bearer ${SECRET}`]);
    expect(err).toMatchObject({ kind: 'relay', status: 401, reason: 'Unauthorized', body: 'scrub', headers: ['Content-Type', 'text/event-stream', 'WWW-Authenticate', 'Bearer [REDACTED]'] });
  });

  it('redirect bodies are scrubbed (they repeat the URL) unless bodiless; Location goes through the resolver', () => {
    // (No content type: a browser would sniff it, so it is sandboxed: response.ts isActiveContent.)
    expect(plan(302, ['Location', '/v1/x'])).toMatchObject({ body: 'scrub', headers: ['Location', 'LOCAL(/v1/x)', 'content-security-policy', 'sandbox'] });
    // Every redirect status, whatever the content type the upstream chose (an event stream included).
    for (const status of [300, 301, 302, 303, 307, 308, 399]) {
      for (const type of ['text/html', 'text/event-stream', 'text/event-stream; charset=utf-8', 'application/octet-stream']) {
        expect(plan(status, ['Content-Type', type, 'Location', '/next']), `${status} ${type}`).toMatchObject({ body: 'scrub' });
      }
    }
    expect(plan(302, ['Location', '/v1/x'], 'HEAD')).toMatchObject({ body: 'pipe' });
    expect(plan(304, [])).toMatchObject({ body: 'pipe' });
    expect(plan(404, [], 'HEAD')).toMatchObject({ body: 'pipe' });
  });

  it('refuses what cannot be relayed, saying why', () => {
    expect(plan(0, [])).toEqual({ kind: 'refuse', problem: 'invalid status code 0' });
    expect(plan(200, ['Transfer-Encoding', 'gzip, chunked'])).toEqual({ kind: 'refuse', problem: 'a transfer-coding other than chunked' });
  });
});
