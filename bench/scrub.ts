import { pathToFileURL } from 'node:url';

/**
 * Micro-benchmark of Scrubber.whole(), which runs on every response header of every
 * response. Usage:
 *   node dist/bench/scrub.js [--scrub=path/to/scrub.js] [--old] [--ms=1500]
 * `--scrub` measures another build of scrub.js (e.g. the previous commit's, compiled to a
 * temp dir); `--old` builds the scrubber as route.ts did before encodings were derived in
 * scrub.ts (each value with its percent-encoding, no options).
 */
const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}`))?.split('=')[1] ?? undefined;
const old = process.argv.includes('--old');
const budgetMs = Number(arg('ms') ?? 1500);

interface ScrubberLike {
  whole(text: string): string;
}
type ScrubberCtor = new (values: readonly string[], options?: { format?: string }) => ScrubberLike;

const mod = (await import(arg('scrub') ? pathToFileURL(arg('scrub')!).href : '../src/sidecar/proxy/scrub.js')) as { Scrubber: ScrubberCtor };

/** The headers of a typical OpenAI answer (values as seen on the wire). */
const HEADERS = [
  'Tue, 25 Nov 2026 10:11:12 GMT',
  'application/json',
  '1534',
  'keep-alive',
  'user-abc123xyz',
  '412',
  '2020-10-01',
  'max-age=31536000; includeSubDomains; preload',
  '10000',
  '2000000',
  '9999',
  '1999626',
  '6ms',
  '11ms',
  'req_5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b',
  'DYNAMIC',
  '__cf_bm=Xk3v9Q.abcDEF123-1732529472-1.0.1.1-Zq8wY7x6V5u4T3s2R1q0P9o8N7m6L5k4J3i2H1g0F9e8D7c6B5a4; path=/; expires=Tue, 25-Nov-26 10:41:12 GMT; domain=.api.openai.com; HttpOnly; Secure; SameSite=None',
  'cloudflare',
  '8e8a1b2c3d4e5f60-AMS',
  'h3=":443"; ma=86400',
];
/** Headers that hold `%` or `\` (a paginated Link, a redirect with a query): the decoding pass. */
const ESCAPED = ['<https://api.example.com/v1/items?after=abc%2Fdef&limit=20>; rel="next"', 'https://api.example.com/v1/files?name=report%202026.pdf&sig=a%2Bb%3D'];

const secret = (i: number) => `sk-proj-${String(i).padStart(2, '0')}Ab3Cd4Ef5Gh6Ij7Kl8Mn9Op0Qr1St2Uv3Wx4Yz5`;

function build(n: number): ScrubberLike {
  const values = Array.from({ length: n }, (_, i) => secret(i));
  if (old) return new mod.Scrubber(values.flatMap((v) => (encodeURIComponent(v) === v ? [v] : [v, encodeURIComponent(v)])));
  return new mod.Scrubber(values, { format: 'Bearer {{credential}}' });
}

function measure(scrubber: ScrubberLike, headers: readonly string[]): number {
  let sink = 0;
  const round = () => {
    for (const h of headers) sink += scrubber.whole(h).length;
  };
  for (let i = 0; i < 20_000; i++) round(); // warm-up: let the JIT settle
  let rounds = 0;
  const start = process.hrtime.bigint();
  const until = start + BigInt(budgetMs) * 1_000_000n;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 1000; i++) round();
    rounds += 1000;
    now = process.hrtime.bigint();
  }
  if (sink === 42) console.log(''); // keep the work observable
  return Number(now - start) / rounds / headers.length;
}

console.log(`scrubber: ${arg('scrub') ?? 'src (this build)'}${old ? ' (old forms)' : ''}; node ${process.version}`);
console.log('values held | ns/header, typical headers | ns/response (20 headers) | ns/header with % or \\');
for (const n of [1, 2, 3, 8]) {
  const s = build(n);
  const typical = measure(s, HEADERS);
  const escaped = measure(s, ESCAPED);
  console.log(`${String(n).padStart(11)} | ${typical.toFixed(0).padStart(25)} | ${(typical * HEADERS.length).toFixed(0).padStart(24)} | ${escaped.toFixed(0).padStart(21)}`);
}
