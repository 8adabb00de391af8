import { describe, expect, it } from 'vitest';
import { authoritySchema } from '../../src/config/authority.js';
import { didYouMean, editDistance, unknownLeaseNames } from '../../src/config/cross-check.js';
import { redactUrl } from '../../src/config/issues.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { ConfigError } from '../../src/core/errors.js';
import { isLoopback } from '../../src/bin/hygiene.js';

/**
 * Config-level secret hygiene: a secret where a name belongs is refused, and no config
 * error ever carries it (nor a URL's query or user:password). Each message is scanned for
 * every 8-character piece of the secret, not just the whole value.
 */
// Made up, shaped like real keys of each kind: none is a real key.
const KEYS = {
  hex32: '9f86d081884c7d659a2feaa0c55ad015',
  openai: 'sk-proj-Zx81TqLm3VbN7cHs0PdR5yWe2KaGfJ4u',
  anthropic: 'sk-ant-api03-Qm7Rb2Xc9Vz4Lk1Hn8Ts5Wd0Jf6Pg3Ya',
  github: 'ghp_R8sT2vX5bN9mQ1wE4yU7iO0pA3sD6fG9hJ2k',
  slack: 'xoxb-204718293456-2047182934567-Ab3Cd5Ef7Gh9Ij1Kl2Mn4Op6',
  aws: 'AKIAQ2WERT5YUIOP7ASD',
  google: 'AIzaSyB3x9Qm7Rb2Xc9Vz4Lk1Hn8Ts5Wd0Jf6P',
  jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlc2lnbmF0dXJl',
};

function problems(schema: typeof sidecarSchema | typeof authoritySchema, text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(schema, text, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).issues];
  }
  throw new Error('expected a ConfigError');
}

/** No 8-character window of the secret occurs in the text. */
function expectNoPieceOf(secret: string, text: string): void {
  for (let i = 0; i + 8 <= secret.length; i++) expect(text, `contains "${secret.slice(i, i + 8)}"`).not.toContain(secret.slice(i, i + 8));
}

const route = (credential: unknown, upstream = 'https://api.vendor.example') => ({
  upstream,
  credential,
  inject: { header: 'authorization', format: 'Bearer {{credential}}' },
  allow: ['GET /**'],
});
const AUTHORITY = { url: 'https://authority.example:8443', caFile: '/etc/leash/ca.pem', bootstrap: { joinToken: { env: 'JT' } } };

describe('an inline secret as a lease name is refused, naming the key path only', () => {
  for (const [kind, key] of Object.entries(KEYS)) {
    it(`${kind}, through \${VENDOR_KEY} (the issue's case), with and without an authority section`, () => {
      for (const authority of [AUTHORITY, undefined]) {
        const text = JSON.stringify({ authority, routes: { vendor: route('${VENDOR_KEY}') } });
        const p = problems(sidecarSchema, text, { VENDOR_KEY: key });
        expect(p).toContain('routes.vendor.credential: looks like a secret written inline; secrets are never inline: use { env } or { file }');
        expectNoPieceOf(key, p.join('\n'));
      }
    });
  }

  it('plausible lease names still pass', () => {
    for (const name of ['openai-prod', 'demo', 'anthropic_batch_2', 'search.v2']) {
      const c = parseConfig(sidecarSchema, JSON.stringify({ authority: AUTHORITY, routes: { r: route(name) } }), {});
      expect(c.routes.r!.credential).toBe(name);
    }
  });

  it('a secret anywhere else is not echoed either: unknown keys, bad values, map keys', () => {
    const key = KEYS.openai;
    const texts = [
      JSON.stringify({ routes: { vendor: route({ env: 'K' }) }, instance: { id: 1, nickname: key } }),
      JSON.stringify({ routes: { vendor: route({ env: 'K' }) }, listen: key }),
      JSON.stringify({ routes: { vendor: { ...route({ env: 'K' }), [key]: true } } }),
      JSON.stringify({ routes: { [key]: route({ env: 'K' }) } }),
      JSON.stringify({ routes: { vendor: route({ env: 'K' }, key) } }),
    ];
    for (const text of texts) expectNoPieceOf(key, problems(sidecarSchema, text).join('\n'));
  });
});

describe('the authority section: names that look like secrets, and typos', () => {
  const authority = (over: Record<string, unknown>) =>
    JSON.stringify({ credentials: { 'openai-prod': { kind: 'static', source: { env: 'OPENAI_KEY' } } }, policies: [{ identities: ['join:*'], credentials: ['openai-prod'] }], ...over });

  it('a credential defined under a secret-shaped name is refused without echoing it', () => {
    const p = problems(authoritySchema, authority({ credentials: { [KEYS.hex32]: { kind: 'static', source: { env: 'K' } } }, policies: [] }));
    expect(p.join('\n')).toMatch(/^credentials: .*secrets are never inline/m);
    expectNoPieceOf(KEYS.hex32, p.join('\n'));
  });

  it('a policy naming a secret is refused without echoing it; a typo gets a did-you-mean', () => {
    const secret = problems(authoritySchema, authority({ policies: [{ identities: ['join:*'], credentials: [KEYS.github] }] }));
    expect(secret).toEqual(['policies[0].credentials[0]: looks like a secret written inline; secrets are never inline: use { env } or { file }']);
    const typo = problems(authoritySchema, authority({ policies: [{ identities: ['join:*'], credentials: ['openai-prdo'] }] }));
    expect(typo).toEqual(['policies[0].credentials[0]: names no credential defined under credentials (got "openai-prdo"); did you mean "openai-prod"?']);
  });
});

describe('URLs in config errors: no query, fragment or user:password', () => {
  const key = 'Zx81TqLm3VbN7cHs0PdR';
  it.each([
    ['an upstream with ?key=', { routes: { vendor: route({ env: 'K' }, `https://api.vendor.example/v1?key=${key}`) } }, 'routes.vendor.upstream: must not have a query or fragment'],
    ['an upstream with #fragment', { routes: { vendor: route({ env: 'K' }, `https://api.vendor.example/v1#${key}`) } }, 'routes.vendor.upstream: must not have a query or fragment'],
    ['a non-URL upstream with a query', { routes: { vendor: route({ env: 'K' }, `ftp://u:${key}@x.example/?key=${key}`) } }, 'routes.vendor.upstream: must be an http(s) URL'],
    ['an authority URL with ?token=', { authority: { ...AUTHORITY, url: `https://authority.example/?token=${key}` }, routes: { vendor: route('search') } }, 'authority.url: must not have a query or fragment'],
    ['an authority URL with user:password', { authority: { ...AUTHORITY, url: `https://admin:${key}@authority.example/` }, routes: { vendor: route('search') } }, 'authority.url: must not carry user:password'],
    ['an http authority URL with a query', { authority: { ...AUTHORITY, url: `http://authority.example/?token=${key}` }, routes: { vendor: route('search') } }, 'authority.url: must be an https URL'],
    ['a bad Redis URL with a password and a query', { revocations: { redis: `http://:${key}@redis.example/?password=${key}` }, routes: { vendor: route({ env: 'K' }) } }, 'revocations.redis: '],
  ])('%s', (_what, doc, expected) => {
    const p = problems(sidecarSchema, JSON.stringify(doc));
    expect(p.some((l) => l.startsWith(expected)), p.join('\n')).toBe(true);
    expectNoPieceOf(key, p.join('\n'));
  });

  it('redactUrl keeps scheme, host, port and path only', () => {
    expect(redactUrl('https://api.example.com:8443/v1/x?key=abc#frag')).toBe('https://api.example.com:8443/v1/x?…');
    expect(redactUrl(new URL('https://u:p@api.example.com/v1'))).toBe('https://…@api.example.com/v1');
    expect(redactUrl('redis://:hunter2@redis.example:6379/0')).toBe('redis://…@redis.example:6379/0');
    expect(redactUrl('https://api.example.com/')).toBe('https://api.example.com/');
    expect(redactUrl('not a url?key=abc')).toBe('not a url?…');
  });
});

describe('cross-checks and helpers', () => {
  it('unknownLeaseNames: each unknown name is a problem with a did-you-mean; the name is not repeated', () => {
    const routes = { a: { credential: 'openai-prod' }, b: { credential: 'openai-prdo' }, c: { credential: { env: 'X' } }, d: { credential: 'zzz-nothing-alike' }, e: { credential: KEYS.hex32 } };
    const p = unknownLeaseNames(routes, ['openai-prod', 'anthropic']);
    expect(p).toEqual([
      'sidecar.routes.b.credential: names no credential the authority section defines (openai-prod, anthropic); did you mean "openai-prod"?',
      'sidecar.routes.d.credential: names no credential the authority section defines (openai-prod, anthropic)',
      'sidecar.routes.e.credential: looks like a secret written inline; secrets are never inline: use { env } or { file }',
    ]);
    expect(p.join('\n')).not.toContain('openai-prdo');
    expect(p.join('\n')).not.toContain('zzz-nothing-alike');
  });

  it('didYouMean / editDistance', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(didYouMean('serch', ['search', 'demo'])).toBe('search');
    expect(didYouMean('completely-different', ['search', 'demo'])).toBeUndefined();
    expect(didYouMean('x', [])).toBeUndefined();
    // A swap of two neighbours is one typo; two of three letters changed is another word.
    expect(editDistance('credentails', 'credentials')).toBe(1);
    expect(editDistance('ca', 'ac')).toBe(1);
    expect(editDistance('abc', 'ca')).toBe(3);
    expect(didYouMean('lgo', ['log', 'listen'])).toBe('log');
    expect(didYouMean('credentails', ['credentials', 'policies'])).toBe('credentials');
    expect(didYouMean('serach', ['search'])).toBe('search');
    expect(didYouMean('foo', ['log', 'listen', 'admin'])).toBeUndefined();
    expect(didYouMean('tsl', ['tls'])).toBe('tls');
  });

  it('isLoopback', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '[::]', '10.0.0.1', '192.168.1.5', 'example.com', '::ffff:10.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });
});
