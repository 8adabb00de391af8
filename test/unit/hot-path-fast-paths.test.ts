import { describe, expect, it } from 'vitest';
import { AnomalyDetector, type AnomalyPolicy, type ObservedRequest } from '../../src/sidecar/anomalies.js';
import { runDecidePasses, runHeadPasses, runSendPasses } from '../../src/sidecar/proxy/passes.js';
import { PrefixResolver } from '../../src/sidecar/proxy/resolve.js';
import { UpstreamTimeouts } from '../../src/sidecar/proxy/timeouts.js';
import { jsonString, millisJson, requestLineBody, type AuditFields } from '../../src/telemetry/audit.js';
import { contextOf, envFor, HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';
import type { ClientRequest } from 'node:http';
import type { RequestBodyFilter } from '../../src/sidecar/proxy/request-body.js';
import { hasBadValueChar, headFacts, isToken, relayHeaders } from '../../src/sidecar/proxy/response.js';
import { responseSkipSet } from '../../src/sidecar/proxy/headers.js';
import { Scrubber } from '../../src/sidecar/proxy/scrub.js';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { seededRandom } from '../helpers/random.js';

/**
 * Fast paths of the per-request hot path (issue 11), each pinned against the general path
 * it stands in for: same answers for every input tried, hand-picked and random.
 */
const next = seededRandom(424242);

/** requestLineBody as it was before the fast path: JSON.stringify for every string. */
function requestLineBodyReference(event: string, f: AuditFields): string {
  const n = (x: number) => (Number.isFinite(x) ? String(x) : 'null');
  let s = `,"v":1,"event":${JSON.stringify(event)}`;
  if (f.instance !== undefined) s += `,"instance":${JSON.stringify(f.instance)}`;
  if (f.route !== undefined) s += `,"route":${JSON.stringify(f.route)}`;
  if (f.method !== undefined) s += `,"method":${JSON.stringify(f.method)}`;
  if (f.path !== undefined) s += `,"path":${JSON.stringify(f.path)}`;
  if (f.status !== undefined) s += `,"status":${n(f.status)}`;
  if (f.durationMs !== undefined) s += `,"durationMs":${n(f.durationMs)}`;
  if (f.fingerprint !== undefined) s += `,"fingerprint":${JSON.stringify(f.fingerprint)}`;
  if (f.reason !== undefined) s += `,"reason":${JSON.stringify(f.reason)}`;
  return s;
}

describe('audit line: jsonString is JSON.stringify', () => {
  it('on hand-picked strings (every ASCII code, quotes, backslashes, non-ASCII, lone surrogates)', () => {
    const picked = ['', 'GET', '/v1/ok', 'a"b', 'a\\b', '\u007f', '\u0080', '\u00e9', '\u2028', '\ud800', '\udc00x', '\ud83d\ude00', '</script>', 'tab\there'];
    for (let c = 0; c < 0x100; c++) picked.push(String.fromCharCode(c), `x${String.fromCharCode(c)}y`);
    for (const s of picked) expect(jsonString(s), JSON.stringify(s)).toBe(JSON.stringify(s));
  });

  it('on random strings', () => {
    const alphabet = ['a', 'Z', '0', '/', '-', '_', '.', ' ', '"', '\\', '\n', '\u0000', '\u001f', '\u007f', '\u00e9', '\u2028', '\ud800', '\udfff', '\ud83d\ude00', '~', '{'];
    for (let n = 0; n < 20_000; n++) {
      let s = '';
      const len = next() % 10;
      for (let i = 0; i < len; i++) s += alphabet[next() % alphabet.length];
      expect(jsonString(s)).toBe(JSON.stringify(s));
    }
  });

  it('requestLineBody writes the bytes the JSON.stringify version wrote', () => {
    const strings = ['openai', 'GET', '/v1/chat/completions', 'fp_0123abcd', 'a"b', 'x\\y', '\u00e9t\u00e9', '\n', '\ud800', ''];
    const pick = () => (next() % 5 === 0 ? undefined : strings[next() % strings.length]);
    for (let n = 0; n < 5_000; n++) {
      const f: AuditFields = {
        instance: pick(),
        route: pick(),
        method: pick(),
        path: pick(),
        status: next() % 4 === 0 ? undefined : [200, 502, NaN, Infinity][next() % 4],
        durationMs: next() % 4 === 0 ? undefined : [0.123, 12, -0, NaN][next() % 4],
        fingerprint: pick(),
        reason: pick(),
      };
      const event = next() % 2 === 0 ? 'request' : 'request.denied';
      expect(requestLineBody(event, f)).toBe(requestLineBodyReference(event, f));
    }
  });
});

describe('audit line: millisJson is String(Math.round(ms * 1000) / 1000)', () => {
  const reference = (ms: number) => {
    const x = Math.round(ms * 1000) / 1000;
    return Number.isFinite(x) ? String(x) : 'null';
  };
  it('on hand-picked durations (every fraction shape, zero, huge, not finite)', () => {
    const picked = [0, -0, 0.001, 0.01, 0.1, 0.011, 0.101, 0.11, 0.999, 1, 1.5, 1.05, 1.005, 1.0005, 1.0004, 12.34, 999.9999, 1e6 + 0.25, 123456789.123, 1e11 + 0.001, 1e12 - 0.001, 1e12, 1e13, 1e21, -1.5, NaN, Infinity, -Infinity];
    for (const ms of picked) expect(millisJson(ms), String(ms)).toBe(reference(ms));
  });
  it('on random durations, rounded to the microsecond as outcomes.ts does and raw', () => {
    for (let n = 0; n < 50_000; n++) {
      const scale = [1, 10, 1_000, 100_000, 1e9][next() % 5]!;
      const raw = (next() / 0x7fffffff) * scale;
      expect(millisJson(raw), String(raw)).toBe(reference(raw));
      const rounded = Math.round(raw * 1000) / 1000;
      expect(millisJson(rounded), String(rounded)).toBe(reference(rounded));
    }
  });
});

describe('relayHeaders: the per-name memos (by position, by name) answer as the plain path', () => {
  /** relayHeaders as it was before the memo: every fact worked out per header. */
  function relayReference(raw: readonly string[], skip: ReadonlySet<string>, scrubber: Scrubber, valueOf: (l: string, v: string) => string, fullNames: boolean) {
    const headers: string[] = [];
    let dropped = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (skip.has(lower) || lower.startsWith('x-leash-')) continue;
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name) || (fullNames ? scrubber.full(name) : scrubber.whole(name)) !== name || scrubber.nameHolds(lower, fullNames)) {
        dropped++;
        continue;
      }
      const value = valueOf(lower, raw[i + 1]!);
      if (/[^\t\x20-\x7e\x80-\xff]/.test(value)) {
        dropped++;
        continue;
      }
      headers.push(name, value);
    }
    return { headers, dropped };
  }

  it('on random answers, with more distinct names than the memo keeps, every skip set, secret-holding names', () => {
    // A fake key, for the scrubber only.
    const secret = 'sk-fake-relay-memo-0123456789abcdef';
    const scrubber = new Scrubber([secret]);
    const names = ['Content-Type', 'content-type', 'CONTENT-TYPE', 'Date', 'Connection', 'connection', 'Keep-Alive', 'Transfer-Encoding', 'Upgrade', 'TE', 'Trailer',
      'Proxy-Authenticate', 'X-Leash-Error', 'x-leash-anything', 'Location', 'Content-Location', 'Refresh', 'Set-Cookie', 'bad name', 'bad:name', '', 'ümlaut',
      `X-${secret}`, `x-echo-${secret.slice(3)}`, 'Content-Length', 'Content-Encoding', 'X-Custom'];
    const values = ['application/json', '', 'keep-alive', `Bearer ${secret}`, 'a\x00b', 'tab\there', 'caf\u00e9', '\u0100', 'https://api.example/x', secret];
    const valueOf = (l: string, v: string) => (l === 'location' ? `L:${scrubber.full(v)}` : scrubber.whole(v));
    const skips = [responseSkipSet(undefined), responseSkipSet('keep-alive'), responseSkipSet('x-custom, date'), new Set([...responseSkipSet(undefined), 'content-length', 'content-encoding'])];
    let previous: string[] = [];
    for (let n = 0; n < 3_000; n++) {
      const raw: string[] = [];
      // Now and then more headers than the by-position memo has slots; often the previous
      // answer's names again (the by-position hits), with new values.
      const again = n > 0 && next() % 3 === 0;
      const count = again ? previous.length / 2 : next() % 6 === 0 ? 28 + (next() % 12) : next() % 8;
      for (let h = 0; h < count; h++) {
        // Every so often a never-seen name, so the memo fills past its bound.
        const name = again ? previous[2 * h]! : next() % 4 === 0 ? `X-Fresh-${n}-${h}` : names[next() % names.length]!;
        raw.push(name, values[next() % values.length]!);
      }
      previous = raw;
      const skip = skips[next() % skips.length]!;
      const full = next() % 2 === 0;
      expect(relayHeaders(raw, skip, scrubber, valueOf, full), JSON.stringify(raw)).toEqual(relayReference(raw, skip, scrubber, valueOf, full));
    }
  });
});

describe('PrefixResolver.resolveInto answers as resolve', () => {
  it('on hand-picked and random targets', () => {
    const provider = new HandsOutAnything(undefined);
    const openai = routeFor('https://api.openai.com/v1', provider, {}, 'openai');
    const r = new PrefixResolver((name) => (name === 'openai' ? openai : undefined));
    const urls = ['/openai/v1/ok', '/openai', '/openai/', '/nope/x', '/openai/../admin', 'http://evil/x', '', '*', '/openai/a%2Fb?x=1', '/openai//x'];
    const alphabet = ['/', 'openai', 'nope', 'v1', '.', '..', '%2e', '?', '&', '\\', '\u00e9', ' '];
    for (let n = 0; n < 5_000; n++) {
      let u = '/';
      const len = next() % 6;
      for (let i = 0; i < len; i++) u += alphabet[next() % alphabet.length];
      urls.push(u);
    }
    for (const url of urls) {
      const want = r.resolve(requestOf('GET', url));
      const into = { route: undefined, target: undefined } as { route: unknown; target: unknown };
      const got = r.resolveInto(requestOf('GET', url), into as never);
      if (want instanceof Error) {
        expect(got, url).toBeInstanceOf(want.constructor);
        expect(got?.message, url).toBe(want.message);
        expect(into, url).toEqual({ route: undefined, target: undefined });
      } else {
        expect(got, url).toBeUndefined();
        expect(into.route, url).toBe(want.route);
        expect(into.target, url).toEqual(want.target);
      }
    }
    openai.close();
  });
});

const BODY_FILTER: RequestBodyFilter = { name: 'test', maxBytes: 1024, end: () => undefined };

describe('runHeadPasses is DECIDE then SEND', () => {
  // A fake credential value (these passes only move it into a header).
  const held = { value: 'sk-head-passes-0123456789', fingerprint: 'fp', acquiredAtMs: 0, expiresAtMs: undefined, lease: undefined };
  const cases: Array<[string, string, string[]?]> = [
    ['GET', '/search/x'],
    ['GET', '/nope/x'],
    ['POST', '/search/x', ['Host', 'h', 'Content-Length', '3']],
    ['GET', '/search/../x'],
    ['CONNECT', 'example.com:443'],
    ['GET', '/search/x', ['Host', 'a', 'Host', 'b']],
    ['HEAD', '/search/x', ['Host', 'h', 'Transfer-Encoding', 'chunked']],
  ];
  for (const bodyRoute of [false, true]) {
    for (const cred of [held, undefined]) {
      it(`same error and context (route inspects bodies: ${bodyRoute}, credential held: ${cred !== undefined})`, () => {
        const over = { allow: ['GET /**', 'POST /**'] };
        const options = bodyRoute ? { bodyFilters: [BODY_FILTER] } : {};
        for (const [method, path, raw] of cases) {
          const run = (one: boolean) => {
            const route = routeFor('http://127.0.0.1:1/base', new HandsOutAnything(cred), over, 'search', options);
            const req = requestOf(method, path, raw);
            const ctx = contextOf(false);
            const env = envFor(route, () => 0);
            const err = one
              ? runHeadPasses(req, ctx, env, (r) => r.bodyFilters.length > 0)
              : (runDecidePasses(req, ctx, env) ?? (ctx.route!.bodyFilters.length > 0 ? undefined : runSendPasses(req, ctx, env)));
            route.close();
            return { err: err && [err.constructor.name, err.message], ctx: { ...ctx, route: ctx.route?.name }, headers: req.headers, url: req.url };
          };
          expect(run(true), `${method} ${path}`).toEqual(run(false));
        }
      });
    }
  }
});

describe('AnomalyDetector operations: the same reports as one key string per operation', () => {
  /** The detector's new-operation rule as it was: a Set of `credential\0method\0rule` keys. */
  class Reference {
    readonly ops = new Set<string>();
    untracked = 0;
    constructor(private readonly max: number) {}
    request(r: ObservedRequest, learning: boolean): boolean {
      if (r.rule === undefined || r.route === undefined || r.credential === undefined) return false;
      const key = `${r.credential}\u0000${r.method}\u0000${r.rule}`;
      if (this.ops.has(key)) return false;
      if (this.ops.size >= this.max) {
        this.untracked++;
        return false;
      }
      this.ops.add(key);
      return !learning;
    }
  }
  it('on random request sequences, through and after the learning window, with the table filling up', () => {
    for (let round = 0; round < 50; round++) {
      const clock = { t: 0, monotonicMs() { return this.t; }, wallMs() { return this.t; } };
      const policy: AnomalyPolicy = { learningWindowMs: 100, clientWindowMs: 1_000, authFailureBurst: { count: 3, windowMs: 10 }, maxOperations: 1 + (next() % 12), maxClients: 4 };
      const d = new AnomalyDetector(clock, policy);
      const ref = new Reference(policy.maxOperations);
      const pick = <T>(xs: T[]) => xs[next() % xs.length]!;
      for (let n = 0; n < 400; n++) {
        clock.t += next() % 3;
        const r: ObservedRequest = {
          route: pick(['a', 'b', undefined]),
          credential: pick(['env:K', 'lease:x', 'x\u0000GET', undefined]),
          method: pick(['GET', 'POST', 'GET\u0000x']),
          rule: pick(['GET /**', 'POST /v1/*', '/**', undefined]),
          remote: '127.0.0.1',
        };
        const want = ref.request(r, clock.t < policy.learningWindowMs);
        const got = d.request(r);
        expect(got?.length ?? 0).toBe(want ? 1 : 0);
        if (want) expect(got![0]).toEqual({ kind: 'new_operation', route: r.route, credential: r.credential, method: r.method, rule: r.rule });
        expect(d.untracked).toBe(ref.untracked);
      }
    }
  });
});

describe('UpstreamTimeouts.payloadOf (the unsolicited-101 lookup)', () => {
  it('finds the payload of a live entry, and nothing once it is untracked', () => {
    const t = new UpstreamTimeouts<string>(() => undefined);
    const a = { destroyed: false } as unknown as ClientRequest;
    const b = { destroyed: false } as unknown as ClientRequest;
    const ea = t.track(a, 1_000, 1_000, 'ctx-a');
    t.track(b, 1_000, 1_000, 'ctx-b');
    expect(t.payloadOf(a)).toBe('ctx-a');
    expect(t.payloadOf(b)).toBe('ctx-b');
    t.untrack(ea);
    expect(t.payloadOf(a)).toBeUndefined();
    expect(t.payloadOf({} as ClientRequest)).toBeUndefined();
    t.close();
  });
});

describe('response headers: isToken and hasBadValueChar are the regexes they replace', () => {
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  const BAD_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/;
  it('on every single UTF-16 code unit below 0x2000, alone and inside text', () => {
    for (let c = 0; c < 0x2000; c++) {
      for (const s of [String.fromCharCode(c), `ab${String.fromCharCode(c)}`, `${String.fromCharCode(c)}cd`]) {
        expect(isToken(s), JSON.stringify(s)).toBe(TOKEN.test(s));
        expect(hasBadValueChar(s), JSON.stringify(s)).toBe(BAD_VALUE_CHAR.test(s));
      }
    }
    for (const s of ['', 'Content-Type', 'x_a.b~c', 'a b', 'a:b', 'a\u00e9', '\ud800', 'text/html; charset=utf-8', 'a\tb', 'a\r\nb']) {
      expect(isToken(s)).toBe(TOKEN.test(s));
      expect(hasBadValueChar(s)).toBe(BAD_VALUE_CHAR.test(s));
    }
  });
  it('on random strings', () => {
    const alphabet = ['a', 'Z', '0', '-', '_', '!', '|', '~', ' ', '\t', '\r', '\n', ':', '"', '(', '\u007f', '\u0080', '\u00ff', '\u0100', '\u2028', '\ud83d\ude00', '\u0000'];
    for (let n = 0; n < 20_000; n++) {
      let s = '';
      const len = next() % 8;
      for (let i = 0; i < len; i++) s += alphabet[next() % alphabet.length];
      expect(isToken(s), JSON.stringify(s)).toBe(TOKEN.test(s));
      expect(hasBadValueChar(s), JSON.stringify(s)).toBe(BAD_VALUE_CHAR.test(s));
    }
  });
});

describe('response head: headFacts reads the raw headers as Node parses them', () => {
  /** Node's own parse of `raw` (IncomingMessage builds `headers` from rawHeaders on first access). */
  const nodeHeaders = (raw: string[]) => {
    const m = new IncomingMessage(new Socket());
    m.rawHeaders = raw;
    const count = Object.getOwnPropertySymbols(m).find((sym) => sym.description === 'kHeadersCount');
    if (!count) throw new Error('Node internals changed: kHeadersCount not found');
    (m as unknown as Record<symbol, number>)[count] = raw.length;
    return m.headers;
  };
  const same = (raw: string[]) => {
    const h = nodeHeaders(raw);
    const ct = h['content-type'];
    const conn = h.connection;
    expect(headFacts(raw), JSON.stringify(raw)).toEqual({
      transferEncoding: h['transfer-encoding'] !== undefined,
      contentType: ct,
      contentTypeRepeated: raw.filter((v, i) => i % 2 === 0 && v.toLowerCase() === 'content-type').length > 1,
      connection: Array.isArray(conn) ? conn.join(', ') : conn,
    });
  };
  it('on hand-picked heads', () => {
    same([]);
    same(['Content-Type', 'application/json', 'Content-Length', '2', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5']);
    same(['content-type', 'text/event-stream', 'CONTENT-TYPE', 'text/html']);
    same(['Connection', 'close', 'connection', 'x-a', 'CONNECTION', 'Upgrade']);
    same(['Transfer-Encoding', 'chunked', 'transfer-encoding', 'gzip']);
    same(['Transfer-Encoding', '']);
    same(['Content-Type', '', 'Content-Type', 'text/event-stream']);
    same(['Connection', '', 'Connection', 'keep-alive']);
  });
  it('on random heads', () => {
    const names = ['Content-Type', 'content-type', 'CONTENT-TYPE', 'Connection', 'connection', 'Transfer-Encoding', 'transfer-encoding', 'Content-Length', 'X-Leash-Error', 'Set-Cookie', 'Keep-Alive', 'Content-Typo', 'Connectiom'];
    const values = ['', 'keep-alive', 'close', 'text/event-stream', 'application/json', 'chunked', 'gzip, chunked', 'a=b'];
    for (let n = 0; n < 5_000; n++) {
      const raw: string[] = [];
      const len = next() % 7;
      for (let i = 0; i < len; i++) raw.push(names[next() % names.length]!, values[next() % values.length]!);
      same(raw);
    }
  });
});
