import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkLeaseResponse, type LeaseCheck } from '../../src/sidecar/credentials/lease-response.js';
import { seededUnit } from '../helpers/random.js';
import { NOW, b64, fp, validLeaseAnswer } from '../helpers/lease-answer.js';

/**
 * checkLeaseResponse is the sidecar's only gate between the authority's JSON and a
 * credential it will inject. Table cases for each rule, then a seeded property loop of
 * random mutations judged by an independent oracle written from the contract.
 */

const valid = validLeaseAnswer;

/** A lease whose value is `value`, fingerprint recomputed. */
const withValue = (value: string, over: Record<string, unknown> = {}) => valid(value, over);

function check(body: unknown, credential = 'openai'): LeaseCheck {
  return checkLeaseResponse(body, credential);
}
/** Which rule refused an answer: the reason names it (and never the value). */
const WHY = {
  object: /^not a JSON object$/,
  lease: /^missing or bad "lease"$/,
  credential: /^answer is for another credential$/,
  value: /^missing or unusable "value"$/,
  versionOrFingerprint: /^missing "version" or "fingerprint"$/,
  fingerprint: /^fingerprint does not match the value$/,
  ttl: /^ttlSeconds must be a positive number$/,
  dates: /^issuedAt\/expiresAt must be ISO timestamps$/,
  order: /^expiresAt is not after issuedAt$/,
  span: /^ttlSeconds exceeds expiresAt − issuedAt$/,
  unsigned: /^JWT is unsigned \(alg none\)$/,
  jwtExp: /^JWT exp is not after iat$/,
} as const;
/** The rule that refuses a missing or mistyped field. */
const FIELD_RULE: Record<string, RegExp> = {
  lease: WHY.lease,
  credential: WHY.credential,
  value: WHY.value,
  fingerprint: WHY.versionOrFingerprint,
  version: WHY.versionOrFingerprint,
  issuedAt: WHY.dates,
  expiresAt: WHY.dates,
  ttlSeconds: WHY.ttl,
};
const refused = (body: unknown, credential = 'openai') => {
  const r = check(body, credential);
  return r.ok ? undefined : r.reason;
};

describe('checkLeaseResponse: table', () => {
  it('accepts a valid answer and returns it unchanged', () => {
    const body = valid();
    const r = check(body);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.lease).toEqual(body);
  });

  it.each(['lease', 'credential', 'value', 'fingerprint', 'version', 'issuedAt', 'expiresAt', 'ttlSeconds'])('refuses an answer missing "%s"', (field) => {
    const body = valid();
    delete body[field];
    expect(refused(body)).toMatch(FIELD_RULE[field]!);
    expect(refused({ ...valid(), [field]: undefined })).toMatch(FIELD_RULE[field]!);
    expect(refused({ ...valid(), [field]: null })).toMatch(FIELD_RULE[field]!);
  });

  it.each([
    ['lease', 42],
    ['lease', ['a']],
    ['lease', { id: 'a' }],
    ['lease', true],
    ['credential', 1],
    ['credential', ['openai']],
    ['value', 123],
    ['value', ['sk']],
    ['value', { v: 'sk' }],
    ['fingerprint', 1],
    ['version', 1],
    ['version', {}],
    ['issuedAt', NOW],
    ['expiresAt', NOW + 300_000],
    ['issuedAt', {}],
    ['ttlSeconds', '300'],
    ['ttlSeconds', [300]],
    ['ttlSeconds', true],
    ['ttlSeconds', { n: 300 }],
  ])('refuses "%s" of the wrong type (%j)', (field, v) => {
    expect(refused({ ...valid(), [field]: v })).toMatch(FIELD_RULE[field]!);
  });

  it('refuses empty strings and over-long ids', () => {
    expect(refused(withValue(''))).toMatch(WHY.value);
    expect(refused({ ...valid(), value: '' })).toMatch(WHY.value);
    expect(refused({ ...valid(), lease: '' })).toMatch(WHY.lease);
    expect(refused({ ...valid(), version: '' })).toMatch(WHY.versionOrFingerprint);
    expect(refused({ ...valid(), fingerprint: '' })).toMatch(WHY.versionOrFingerprint);
    expect(refused({ ...valid(), lease: 'x'.repeat(129) })).toMatch(WHY.lease);
    expect(check({ ...valid(), lease: 'x'.repeat(128) }).ok).toBe(true);
  });

  it.each([
    ['CR', 'sk-abc\rdef'],
    ['LF', 'sk-abc\ndef'],
    ['CRLF header injection', 'sk-abc\r\nx-evil: 1'],
    ['NUL', 'sk-abc\u0000def'],
    ['TAB', 'sk\tabc'],
    ['DEL', 'sk-abc\u007f'],
    ['non-ASCII', 'sk-abcé'],
    ['non-BMP', 'sk-\u{1F511}'],
    ['leading space', ' sk-abc'],
    ['trailing space', 'sk-abc '],
    ['only spaces', '   '],
    ['too long', 'a'.repeat(16 * 1024 + 1)],
  ])('refuses a value with %s (fingerprint matching)', (_label, value) => {
    expect(refused(withValue(value))).toMatch(WHY.value);
  });

  it('accepts header-safe values with inner spaces and the maximum length', () => {
    expect(check(withValue('Bearer sk-abc')).ok).toBe(true);
    expect(check(withValue('a'.repeat(16 * 1024))).ok).toBe(true);
    expect(check(withValue('!')).ok).toBe(true);
  });

  it('refuses an answer for another credential', () => {
    expect(refused(valid(), 'anthropic')).toMatch(WHY.credential);
    expect(refused({ ...valid(), credential: 'OpenAI' })).toMatch(WHY.credential);
    expect(refused({ ...valid(), credential: 'openai ' })).toMatch(WHY.credential);
  });

  it('refuses a fingerprint that does not match the value', () => {
    expect(refused({ ...valid(), fingerprint: fp('another value') })).toMatch(WHY.fingerprint);
    expect(refused({ ...valid(), fingerprint: fp('sk-live-0123456789abcdef').toUpperCase() })).toMatch(WHY.fingerprint);
    expect(refused({ ...valid(), fingerprint: fp('sk-live-0123456789abcdef').replace('sha256:', '') })).toMatch(WHY.fingerprint);
    expect(refused({ ...valid(), fingerprint: `sha256:${createHash('sha256').update('sk-live-0123456789abcdef').digest('hex')}` })).toMatch(WHY.fingerprint);
  });

  it.each([0, -1, -0.001, NaN, Infinity, -Infinity, '300', '', null])('refuses ttlSeconds %j', (ttl) => {
    expect(refused({ ...valid(), ttlSeconds: ttl })).toMatch(WHY.ttl);
  });

  it('refuses expiresAt at or before issuedAt', () => {
    const at = new Date(NOW).toISOString();
    expect(refused({ ...valid(), expiresAt: at, ttlSeconds: 1 })).toMatch(WHY.order);
    expect(refused({ ...valid(), expiresAt: new Date(NOW - 1000).toISOString(), ttlSeconds: 1 })).toMatch(WHY.order);
  });

  it.each(['yesterday', '', '2026-13-01T00:00:00Z', '2026-02-30T25:00:00Z', 'NaN', '0x10', 'Z'])('refuses an invalid date %j', (d) => {
    expect(refused({ ...valid(), issuedAt: d })).toMatch(WHY.dates);
    expect(refused({ ...valid(), expiresAt: d })).toMatch(WHY.dates);
  });

  it('refuses a ttl larger than expiresAt − issuedAt (beyond 1 s of rounding), accepts it equal or smaller', () => {
    expect(refused({ ...valid(), ttlSeconds: 302 })).toMatch(WHY.span);
    expect(refused({ ...valid(), ttlSeconds: 3600 })).toMatch(WHY.span);
    expect(check({ ...valid(), ttlSeconds: 300 }).ok).toBe(true);
    expect(check({ ...valid(), ttlSeconds: 299.5 }).ok).toBe(true);
    expect(check({ ...valid(), ttlSeconds: 0.001 }).ok).toBe(true);
  });

  describe('JWT-shaped values', () => {
    const iat = Math.floor(NOW / 1000);
    const jwt = (header: unknown, payload: unknown, sig = 'c2lnbmF0dXJl') => `${b64(header)}.${b64(payload)}.${sig}`;

    it('accepts a signed JWT', () => {
      expect(check(withValue(jwt({ alg: 'ES256', typ: 'JWT' }, { iat, exp: iat + 300, sub: 'x' }))).ok).toBe(true);
    });

    it('refuses alg none (any case) and an empty signature', () => {
      expect(refused(withValue(jwt({ alg: 'none' }, { iat, exp: iat + 300 }, '')))).toMatch(WHY.unsigned);
      expect(refused(withValue(jwt({ alg: 'none' }, { iat, exp: iat + 300 })))).toMatch(WHY.unsigned);
      expect(refused(withValue(jwt({ alg: 'NoNe' }, { iat, exp: iat + 300 })))).toMatch(WHY.unsigned);
      expect(refused(withValue(jwt({ alg: 'ES256' }, { iat, exp: iat + 300 }, '')))).toMatch(WHY.unsigned);
      expect(refused(withValue(jwt({ typ: 'JWT' }, { iat, exp: iat + 300 })))).toMatch(WHY.unsigned);
      expect(refused(withValue(jwt({ alg: 5 }, { iat, exp: iat + 300 })))).toMatch(WHY.unsigned);
    });

    it('refuses exp < iat and exp == iat', () => {
      expect(refused(withValue(jwt({ alg: 'ES256' }, { iat, exp: iat - 1 })))).toMatch(WHY.jwtExp);
      expect(refused(withValue(jwt({ alg: 'ES256' }, { iat, exp: iat })))).toMatch(WHY.jwtExp);
    });

    it('a header or payload that is JSON but not an object never throws', () => {
      for (const [h, p] of [
        ['null', { iat }],
        [{ alg: 'ES256' }, 'null'],
        ['null', 'null'],
        ['[]', '{}'],
        ['"x"', '1'],
        ['true', 'false'],
      ] as const) {
        expect(() => check(withValue(jwt(h, p)))).not.toThrow();
      }
      // A header that is JSON null has no alg: not a signed JWT.
      expect(refused(withValue(jwt('null', { iat, exp: iat + 60 })))).toMatch(WHY.unsigned);
    });

    it('an opaque token that merely contains dots passes', () => {
      for (const v of ['v1.public.abcdef', 'sk.proj.abc', 'a.b', 'a.b.c.d', 'abc..def', '...', 'ghp_abc.def-ghi_jkl', '1.2.3']) {
        expect(check(withValue(v)).ok, v).toBe(true);
      }
    });
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['array', [valid()]],
    ['empty array', []],
    ['string', JSON.stringify(valid())],
    ['number', 42],
    ['boolean', true],
  ])('refuses a top-level %s', (_l, body) => {
    expect(refused(body)).toMatch(WHY.object);
  });
  it('refuses an empty object for its first missing field', () => {
    expect(refused({})).toMatch(WHY.lease);
  });
});

// ---------------------------------------------------------------------------------------
// Property loop
// ---------------------------------------------------------------------------------------


/** The rule the implementation must name for each oracle verdict (rules apply in the same order). */
const ORACLE_RULE: Record<string, RegExp> = {
  'not an object': WHY.object,
  lease: WHY.lease,
  credential: WHY.credential,
  value: WHY.value,
  'value char': WHY.value,
  'value spaces': WHY.value,
  'version/fingerprint': WHY.versionOrFingerprint,
  fingerprint: WHY.fingerprint,
  ttl: WHY.ttl,
  dates: WHY.dates,
  order: WHY.order,
  'ttl span': WHY.span,
  'jwt unsigned': WHY.unsigned,
  'jwt exp': WHY.jwtExp,
};

/** The contract, written independently of the implementation. */
function satisfiesInvariants(body: unknown, credential: string): string | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'not an object';
  const b = body as Record<string, unknown>;
  const nonEmpty = (v: unknown, max: number) => typeof v === 'string' && v.length >= 1 && v.length <= max;
  if (!nonEmpty(b.lease, 128)) return 'lease';
  if (b.credential !== credential) return 'credential';
  if (!nonEmpty(b.value, 16 * 1024)) return 'value';
  const value = b.value as string;
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c > 0x7e) return 'value char';
  }
  if (value.startsWith(' ') || value.endsWith(' ')) return 'value spaces';
  if (!nonEmpty(b.version, 256) || !nonEmpty(b.fingerprint, 256)) return 'version/fingerprint';
  if (b.fingerprint !== fp(value)) return 'fingerprint';
  if (typeof b.ttlSeconds !== 'number' || !(b.ttlSeconds > 0) || b.ttlSeconds === Infinity) return 'ttl';
  if (typeof b.issuedAt !== 'string' || typeof b.expiresAt !== 'string') return 'dates';
  const i = Date.parse(b.issuedAt);
  const e = Date.parse(b.expiresAt);
  if (Number.isNaN(i) || Number.isNaN(e)) return 'dates';
  if (!(e > i)) return 'order';
  if (b.ttlSeconds * 1000 > e - i + 1000) return 'ttl span';
  const parts = value.split('.');
  if (parts.length === 3 && parts.every((p) => /^[A-Za-z0-9_-]*$/.test(p))) {
    let header: unknown, payload: unknown;
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
      payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    const alg = (header as { alg?: unknown } | null)?.alg;
    if (typeof alg !== 'string' || alg.toLowerCase() === 'none' || parts[2] === '') return 'jwt unsigned';
    const p = payload as { exp?: unknown; iat?: unknown } | null;
    if (typeof p?.exp === 'number' && typeof p?.iat === 'number' && p.exp <= p.iat) return 'jwt exp';
  }
  return undefined;
}

describe('checkLeaseResponse: property loop', () => {
  it('500 random mutations of a valid answer: never throws, accepts only answers that satisfy the contract', () => {
    const rnd = seededUnit(0x1ea5);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const iat = Math.floor(NOW / 1000);
    const randomString = (n: number) => Array.from({ length: n }, () => String.fromCharCode(Math.floor(rnd() * 0x90))).join('');
    const junk = (): unknown =>
      pick<unknown>([
        undefined,
        null,
        0,
        -1,
        1,
        1e300,
        NaN,
        Infinity,
        -Infinity,
        '',
        ' ',
        'x',
        randomString(1 + Math.floor(rnd() * 20)),
        'a\r\nb',
        '\u0000',
        'é',
        [],
        {},
        ['x'],
        { toString: 'x' },
        true,
        false,
        new Date(NOW + Math.floor(rnd() * 2e6 - 1e6)).toISOString(),
        'x'.repeat(300),
        300,
        299.999,
        `${b64({ alg: 'none' })}.${b64({ iat })}.`,
        `${b64('null')}.${b64('null')}.sig`,
      ]);
    const fields = ['lease', 'credential', 'value', 'fingerprint', 'version', 'issuedAt', 'expiresAt', 'ttlSeconds', '__proto__', 'extra'];
    const mutate = (body: Record<string, unknown>): unknown => {
      const kind = rnd();
      if (kind < 0.05) return pick([null, [], [body], 'x', 1, true]);
      const n = 1 + Math.floor(rnd() * 3);
      const out: Record<string, unknown> = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
      for (let k = 0; k < n; k++) {
        const f = pick(fields);
        const r = rnd();
        if (r < 0.15) delete out[f];
        else if (r < 0.3 && f === 'value') {
          // A new value with a correct fingerprint: exercises the value rules, not just the fingerprint.
          const v = pick([randomString(1 + Math.floor(rnd() * 40)), `sk-${Math.floor(rnd() * 1e9)}`, `${b64('null')}.${b64({ iat })}.sig`, junk()]);
          out.value = v;
          if (typeof v === 'string') out.fingerprint = fp(v);
        } else if (r < 0.4 && f === 'ttlSeconds') out.ttlSeconds = (body.ttlSeconds as number) * (rnd() * 2.5);
        else if (r < 0.5 && (f === 'issuedAt' || f === 'expiresAt')) out[f] = new Date(NOW + Math.floor((rnd() - 0.3) * 1e6)).toISOString();
        else Object.defineProperty(out, f, { value: junk(), enumerable: true, writable: true, configurable: true });
      }
      return out;
    };
    const bases = [
      valid(),
      withValue(`${b64({ alg: 'ES256', typ: 'JWT' })}.${b64({ iat, exp: iat + 300 })}.c2ln`),
      withValue('v1.public.opaque-with-dots'),
    ];
    let accepted = 0;
    let refusedCount = 0;
    for (let i = 0; i < 500; i++) {
      const body = mutate(pick(bases));
      let result: LeaseCheck | undefined;
      expect(() => {
        result = checkLeaseResponse(body, 'openai');
      }, `mutation ${i}: ${JSON.stringify(body)?.slice(0, 300)}`).not.toThrow();
      if (result!.ok) {
        accepted++;
        expect(satisfiesInvariants(body, 'openai'), `accepted mutation ${i}: ${JSON.stringify(body)?.slice(0, 300)}`).toBeUndefined();
        expect(result!.lease).toBe(body);
      } else {
        refusedCount++;
        // Refused only when the contract refuses it too, and by the rule the contract names.
        const verdict = satisfiesInvariants(body, 'openai');
        expect(verdict, `refused mutation ${i}: ${JSON.stringify(body)?.slice(0, 300)}`).toBeDefined();
        expect(result!.reason, `mutation ${i} (${verdict})`).toMatch(ORACLE_RULE[verdict!]!);
        const v = (body as { value?: unknown } | null)?.value;
        if (typeof v === 'string' && v.length >= 8) expect(result!.reason).not.toContain(v); // reasons never carry the secret
      }
    }
    // The loop must exercise both outcomes, or it proves nothing.
    expect(accepted).toBeGreaterThan(20);
    expect(refusedCount).toBeGreaterThan(200);
  });

  it('the oracle agrees with the implementation on every table-free random valid answer', () => {
    const rnd = seededUnit(7);
    for (let i = 0; i < 100; i++) {
      const span = 1 + Math.floor(rnd() * 86_400);
      const value = `tok-${Math.floor(rnd() * 1e12).toString(36)}`;
      const body = withValue(value, { expiresAt: new Date(NOW + span * 1000).toISOString(), ttlSeconds: span * (0.01 + rnd() * 0.99) });
      expect(satisfiesInvariants(body, 'openai')).toBeUndefined();
      expect(check(body).ok).toBe(true);
    }
  });
});
