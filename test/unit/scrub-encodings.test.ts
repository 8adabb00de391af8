import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { systemClock } from '../../src/core/clock.js';
import { EnvCredential } from '../../src/sidecar/credentials/static-sources.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { REDACTED, ScrubStream, type Scrubber } from '../../src/sidecar/proxy/scrub.js';

/**
 * A generated matrix: every common encoding of a held secret × every place an upstream
 * echoes it (error body JSON and text, a normal response header, Location, Refresh),
 * through the scrubber a real route builds (RouteRuntime.currentScrubber with a real
 * EnvCredential), so the forms the route derives are part of what is tested. Each case
 * asserts the encoded secret is gone — by an oracle that decodes independently — and that
 * the text around it is untouched.
 */
const USER = 'svc-agent';
const SECRETS = {
  plain: 'sk-proj-Ab3Cd4Ef5Gh6Ij7Kl8Mn9Op0Qr1',
  specials: 'tok/With+Specials=And-Dash_77aa.q~',
};

const hex = (c: number, upper: boolean) => (upper ? c.toString(16).toUpperCase() : c.toString(16)).padStart(2, '0');
const pctAll = (s: string, upper: boolean) => [...Buffer.from(s)].map((b) => `%${hex(b, upper)}`).join('');
const uAll = (s: string, upper: boolean) => [...s].map((c) => `\\u${hex(c.charCodeAt(0), upper).padStart(4, '0')}`).join('');
const b64 = (s: string) => Buffer.from(s).toString('base64');
const hexOf = (s: string) => Buffer.from(s).toString('hex');
/** HTML character references: decimal `&#45;`, hex `&#x2d;` (or `&#X2D;`), with or without the `;`. */
const htmlDec = (c: string, semi = true) => `&#${c.charCodeAt(0)}${semi ? ';' : ''}`;
const htmlHex = (c: string, upper: boolean) => `&#${upper ? 'X' : 'x'}${hex(c.charCodeAt(0), upper)};`;
/** HTML5 names of the punctuation a key or its base64 holds (`-` has none: numeric). */
const NAMED: Record<string, string> = { '+': '&plus;', '/': '&sol;', '=': '&equals;', '.': '&period;', _: '&lowbar;', '~': '&#126;', '-': '&#45;' };
const url = (s: string) => s.replace(/\+/g, '-').replace(/\//g, '_');
const bare = (s: string) => s.replace(/=+$/, '');

type Inject = 'header' | 'basic' | 'query';
/**
 * Every encoding of `v` an upstream plausibly echoes. `exact`: for which injection the
 * whole text is replaced (for the others only the part that encodes the secret is, e.g.
 * `Bearer [REDACTED]` when the route sends Basic).
 */
function encodings(v: string): { name: string; text: string; exact: readonly Inject[] }[] {
  const all: Inject[] = ['header', 'basic', 'query'];
  const out: [string, string, Inject[]?][] = [
    ['raw', v],
    ['json \\u partial (only - or first char)', v.includes('-') ? v.replace(/-/g, '\\u002d') : `\\u00${hex(v.charCodeAt(0), false)}${v.slice(1)}`],
    ['json \\u partial upper hex', v.replace(/[-/+]/g, (c) => `\\u00${hex(c.charCodeAt(0), true)}`)],
    ['json \\u every char, lower hex', uAll(v, false)],
    ['json \\u every char, upper hex', uAll(v, true)],
    ['json \\/ escaped slashes', v.replace(/\//g, '\\/')],
    ['json \\u inside JSON (\\\\u, two backslashes)', uAll(v, false).replace(/\\u/g, '\\\\u')],
    ['encodeURIComponent', encodeURIComponent(v)],
    ['percent every byte, lower hex', pctAll(v, false)],
    ['percent every byte, upper hex', pctAll(v, true)],
    ['double encodeURIComponent', encodeURIComponent(encodeURIComponent(v))],
    ['double percent every byte (%25XX)', encodeURIComponent(pctAll(v, true))],
    ['double percent every byte, lower (%25xx)', encodeURIComponent(pctAll(v, false)).toLowerCase()],
    ['html decimal every char', [...v].map((c) => htmlDec(c)).join('')],
    // The last one keeps its `;`: without it, a `;` that follows in the text would be read as its end.
    ['html decimal every char, no semicolons', [...v].map((c, i) => htmlDec(c, i === v.length - 1)).join('')],
    ['html hex every char, lower', [...v].map((c) => htmlHex(c, false)).join('')],
    ['html hex every char, upper', [...v].map((c) => htmlHex(c, true)).join('')],
    ['html partial: punctuation numeric (&#45;)', v.replace(/[-+/=._~]/g, (c) => htmlDec(c))],
    ['html partial: punctuation named (&plus; &sol; &equals; &period; &lowbar;)', v.replace(/[-+/=._~]/g, (c) => NAMED[c]!)],
    ['html escaped twice (&amp;#x2d;)', v.replace(/[-+/=._~]/g, (c) => `&amp;${htmlHex(c, false).slice(1)}`)],
    // Escaped padding is left (`[REDACTED]&equals;`), as `%3D` is: it is not the secret.
    ['html named base64 (&plus; &sol; &equals;)', b64(v).replace(/[+/=]/g, (c) => NAMED[c]!), []],
    ['base64 padded', b64(v)],
    ['base64 unpadded', bare(b64(v))],
    ['base64url padded', url(b64(v))],
    ['base64url unpadded', bare(url(b64(v)))],
    ['base64 of user:secret', b64(`${USER}:${v}`), ['basic']],
    ['base64 of user:secret unpadded', bare(b64(`${USER}:${v}`)), ['basic']],
    ['base64url of user:secret', bare(url(b64(`${USER}:${v}`))), ['basic']],
    ['Basic <base64(user:secret)>', `Basic ${b64(`${USER}:${v}`)}`, ['basic']],
    ['percent-encoded base64 of user:secret (%2B %2F %3D)', encodeURIComponent(b64(`${USER}:${v}`)), ['basic']],
    ['Bearer <secret> whole', `Bearer ${v}`, ['header']],
    ['base64 of Bearer <secret>', b64(`Bearer ${v}`), ['header']],
    ['json \\u escaped base64', uAll(b64(v), false)],
    // At an arbitrary byte offset inside a longer base64 text: only the middle is the secret's.
    ['base64, secret at byte offset 1', b64(`x${v}yz`), []],
    ['base64, secret at byte offset 2', b64(`xy${v}z`), []],
    ['base64url, secret at byte offset 1', url(b64(`{${v}}`)), []],
    ['hex, lower case', hexOf(v)],
    ['hex, upper case', hexOf(v).toUpperCase()],
    ['hex of a longer text (a request dump)', hexOf(`GET /v1?k=${v} HTTP/1.1`), []],
    ['hex of a longer text, upper case', hexOf(`{"key":"${v}"}`).toUpperCase(), []],
    // How a query route sends it: an upstream that base64-encodes the URL it was asked for.
    ['base64 of the percent-encoded secret', b64(encodeURIComponent(v))],
    ['base64url of a URL holding the percent-encoded secret', url(b64(`https://api.example.com/v1/items?api_key=${encodeURIComponent(v)}`)), []],
    ['base64 of a URL holding the percent-encoded secret, offset 1', b64(`/cb?api_key=${encodeURIComponent(v)}&n=1`), []],
  ];
  return out.map(([name, text, exact]) => ({ name, text, exact: exact ?? all }));
}

const PLACES: { name: string; mode: 'full' | 'whole'; wrap: (e: string) => string }[] = [
  {
    name: 'error body JSON',
    mode: 'full',
    wrap: (e) => `{"error":{"message":"Incorrect API key provided: ${e}. See https://platform.example.com/docs/auth","type":"invalid_request_error","code":"invalid_api_key"}}`,
  },
  { name: 'error body text', mode: 'full', wrap: (e) => `401 Unauthorized: the credential ${e} was refused (request req_8f3a2c; retry later)\n` },
  { name: 'normal-response header', mode: 'whole', wrap: (e) => `session=abc123; token=${e}; Path=/; HttpOnly` },
  { name: 'Location on a redirect', mode: 'whole', wrap: (e) => `https://api.example.com/v1/continue?key=${e}&page=2&q=hello%20world` },
  { name: 'Refresh', mode: 'whole', wrap: (e) => `0; url=/v1/login?token=${e}&next=%2Fhome` },
];

const pctDecoded = (s: string) => s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));

/** The secret is findable in `text` by decoding it independently of the scrubber's code. */
function leaks(text: string, secret: string): boolean {
  let decoded = text;
  const named: Record<string, string> = { plus: '+', sol: '/', equals: '=', period: '.', lowbar: '_', amp: '&' };
  for (let i = 0; i < 4; i++) {
    decoded = decoded
      // One level of HTML escaping per round (so `&amp;#45;` takes two).
      .replace(/&#([0-9]+);?|&#[xX]([0-9A-Fa-f]+);?|&([a-z]+);/g, (m, d?: string, h?: string, n?: string) =>
        d !== undefined ? String.fromCharCode(Number(d)) : h !== undefined ? String.fromCharCode(parseInt(h, 16)) : (named[n!] ?? m),
      )
      .replace(/\\\\/g, '\\') // one level of JSON string escaping (JSON in JSON) per round
      .replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
      .replace(/\\u([0-9A-Fa-f]{4})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
      .replace(/\\\//g, '/');
  }
  if (decoded.includes(secret)) return true;
  for (const run of decoded.match(/[A-Za-z0-9+/_-]{8,}/g) ?? []) {
    const std = run.replace(/-/g, '+').replace(/_/g, '/');
    for (let skip = 0; skip < 4; skip++) {
      const bytes = Buffer.from(std.slice(skip).slice(0, Math.floor((std.length - skip) / 4) * 4), 'base64').toString('latin1');
      // The middle of the secret is enough to count as a leak (its edges may mix with neighbours).
      if (bytes.includes(secret.slice(2, -2)) || pctDecoded(bytes).includes(secret.slice(2, -2))) return true;
    }
  }
  for (const run of decoded.match(/[0-9A-Fa-f]{16,}/g) ?? []) {
    for (let skip = 0; skip < 2; skip++) if (Buffer.from(run.slice(skip), 'hex').toString('latin1').includes(secret.slice(2, -2))) return true;
  }
  return false;
}

function routeScrubber(inject: Record<string, unknown>, secret: string): Scrubber {
  const env = { KEY: secret };
  const config = parseConfig(
    sidecarSchema,
    JSON.stringify({ listen: '127.0.0.1:0', routes: { r: { upstream: 'https://api.example.com', credential: { env: 'KEY' }, inject, allow: ['GET /**'] } } }),
    env,
  );
  const provider = new EnvCredential('KEY', env, systemClock, () => undefined);
  void provider.start();
  const route = new RouteRuntime('r', config.routes.r!, provider, undefined);
  route.close();
  return route.currentScrubber();
}

const INJECTS: Record<Inject, Record<string, unknown>> = {
  header: { header: 'authorization', format: 'Bearer {{credential}}' },
  basic: { basic: { username: USER } },
  query: { query: 'api_key' },
};

describe.each(Object.entries(INJECTS) as [Inject, Record<string, unknown>][])('every encoding of the secret is scrubbed (%s injection)', (kind, inject) => {
  const cases = Object.entries(SECRETS).flatMap(([kind, secret]) =>
    encodings(secret).flatMap((enc) => PLACES.map((place) => ({ kind, secret, enc, place }))),
  );
  const scrubbers = new Map(Object.values(SECRETS).map((s) => [s, routeScrubber(inject, s)]));
  it.each(cases.map((c) => [`${c.kind} / ${c.enc.name} / ${c.place.name}`, c] as const))('%s', (_name, c) => {
    const scrubber = scrubbers.get(c.secret)!;
    const input = c.place.wrap(c.enc.text);
    expect(leaks(input, c.secret), 'the oracle sees the secret in the input').toBe(true);
    const out = c.place.mode === 'full' ? scrubber.full(input) : scrubber.whole(input);
    expect(leaks(out, c.secret), out).toBe(false);
    expect(out).toContain(REDACTED);
    if (c.enc.exact.includes(kind)) {
      // Exactly the encoded secret is replaced: everything around it is left as it was.
      expect(out).toBe(c.place.wrap(REDACTED));
    } else {
      const [before, after] = c.place.wrap('\u0000').split('\u0000') as [string, string];
      expect(out.startsWith(before) && out.endsWith(after), out).toBe(true);
    }
  });
});

describe('no over-scrubbing of ordinary text', () => {
  const TEXTS = [
    '{"error":{"message":"The model `gpt-4o` does not exist or you do not have access to it.","type":"invalid_request_error"}}',
    'Bearer realm="api", error="invalid_token", error_description="The access token expired"',
    'Basic realm="upload", charset="UTF-8"',
    'https://api.example.com/v1/search?q=caf%C3%A9%20cr%C3%A8me&sort=-date&sk=proj%2Dlist',
    '0; url=/v1/login?next=%252Fhome%252Fprojects',
    '{"detail":"caf\\u00e9 \\u2014 r\\u00e9sum\\u00e9 \\/ path \\u002d dash","id":"c2stcHJvai1BYjND"}',
    'see sk-proj docs; dGVzdA== is base64 of test; c2stcHJv starts many keys',
    'ETag: "33a64df551425fcc55e4d42a148795d9f25f89d4", max-age=31536000; includeSubDomains',
    '<p>Tom &amp; Jerry &lt;b&gt;caf&eacute;&lt;/b&gt; &#8212; a&#45;b &#x2F;path?x=1&y=2&amp;sk=proj&#45;list &#99999999; &#x110000;</p>',
  ];
  for (const [injectName, inject] of Object.entries(INJECTS)) {
    for (const secret of Object.values(SECRETS)) {
      const scrubber = routeScrubber(inject, secret);
      it(`${injectName}, ${secret.slice(0, 6)}…: whole() and full() leave every text as it was`, () => {
        for (const t of TEXTS) {
          expect(scrubber.whole(t), t).toBe(t);
          expect(scrubber.full(t), t).toBe(t);
        }
      });
    }
  }
});

async function runThrough(scrubber: Scrubber, chunks: Buffer[]): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks, { objectMode: false }).pipe(new ScrubStream(scrubber))) out.push(c as Buffer);
  return Buffer.concat(out).toString();
}

describe('ScrubStream (bodies over 64 KiB) finds encoded secrets split across chunks', () => {
  const secret = SECRETS.specials;
  const scrubber = routeScrubber(INJECTS.header, secret);
  for (const text of [uAll(secret, false), encodeURIComponent(pctAll(secret, true)), b64(secret), [...secret].map((c) => htmlHex(c, false)).join(''), secret.replace(/[-+/=._~]/g, (c) => NAMED[c]!)]) {
    it(`${text.slice(0, 14)}… split at every offset`, async () => {
      const body = Buffer.from(`{"a":"${text}","b":"kept"}`);
      for (let i = 0; i <= body.length; i++) {
        const out = await runThrough(scrubber, [body.subarray(0, i), body.subarray(i)]);
        // A form cut short by a chunk end can match by its middle first, leaving the
        // padding or the last base64 character (a few bits, never the secret).
        expect(out.startsWith(`{"a":"${REDACTED}`) && out.endsWith('","b":"kept"}'), `split at ${i}: ${out}`).toBe(true);
        expect(leaks(out, secret), `split at ${i}: ${out}`).toBe(false);
        expect(out.length, `split at ${i}: ${out}`).toBeLessThanOrEqual(`{"a":"${REDACTED}","b":"kept"}`.length + 3);
      }
    });
  }
});

describe('hostile echoes cannot stall the event loop', () => {
  const scrubber = routeScrubber(INJECTS.header, SECRETS.specials);
  const texts: Record<string, string> = {
    'a run of backslashes': '\\'.repeat(64 * 1024),
    'a run of %25 without hex': `%${'25'.repeat(32 * 1024)}zz`,
    'escapes everywhere': '\\u0041%2F'.repeat(6 * 1024),
    'a run of &amp; without a reference': `${'&amp;'.repeat(13 * 1024)}x`,
    'a run of &# without digits': `${'&#'.repeat(32 * 1024)}x`,
    'html references everywhere': '&#65;&plus;&amp;#x2F;'.repeat(3 * 1024),
    'one long token then a dot (masked-token rule)': `${'a'.repeat(64 * 1024)}.`,
    'one long token then a mask run': `${'a'.repeat(64 * 1024)}***`,
  };
  for (const [name, text] of Object.entries(texts)) {
    it(`${name} (64 KiB) is scrubbed in linear time`, () => {
      const started = performance.now();
      scrubber.full(text);
      // Linear work is a few ms here; the quadratic form took seconds (12 s for this size).
      expect(performance.now() - started).toBeLessThan(1_000);
    });
  }
});
