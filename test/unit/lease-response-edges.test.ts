import { describe, expect, it } from 'vitest';
import { checkLeaseResponse } from '../../src/sidecar/credentials/lease-response.js';
import { NOW, b64, fp, validLeaseAnswer } from '../helpers/lease-answer.js';

/**
 * Boundary cases of the lease-answer gate: the exact ttl/span edge, which values count as
 * JWT-shaped, a JWT whose iat is not a number, and every way `crit` can be malformed.
 * Each case asserts the exact outcome (accepted, or the reason it is refused).
 */

const answer = validLeaseAnswer;
const reasonOf = (body: unknown): string | undefined => {
  const r = checkLeaseResponse(body, 'openai');
  return r.ok ? undefined : r.reason;
};
const NOT_A_LIST = '"crit" is not a list of field names';
const UNKNOWN_CRIT = /^the authority marks .* critical, which this sidecar does not understand/;

describe('ttlSeconds against expiresAt − issuedAt', () => {
  it('accepts a ttl exactly one second longer than the span (the allowed rounding slack)', () => {
    expect(reasonOf(answer(undefined, { ttlSeconds: 301 }))).toBeUndefined();
  });
  it('refuses a ttl just past that slack', () => {
    expect(reasonOf(answer(undefined, { ttlSeconds: 301.001 }))).toBe('ttlSeconds exceeds expiresAt − issuedAt');
  });
});

describe('which values are treated as JWTs', () => {
  const noneHeader = b64({ alg: 'none' });
  it('does not treat a two-part dotted token as a JWT (so its alg is never judged)', () => {
    expect(reasonOf(answer(`${noneHeader}.${b64({})}`))).toBeUndefined();
  });
  it('does not treat a four-part dotted token as a JWT', () => {
    expect(reasonOf(answer(`${noneHeader}.${b64({})}.sig.more`))).toBeUndefined();
  });
  it('does not treat a three-part token with a non-base64url character in any part as a JWT', () => {
    expect(reasonOf(answer(`${noneHeader}.${b64({})}.a+b`))).toBeUndefined();
    expect(reasonOf(answer(`${noneHeader}.${b64({})}.+ab`))).toBeUndefined();
    expect(reasonOf(answer(`${noneHeader}.${b64({})}.ab+`))).toBeUndefined();
  });
  it('still refuses the same header as a real three-part alg-none JWT', () => {
    expect(reasonOf(answer(`${noneHeader}.${b64({})}.sig`))).toBe('JWT is unsigned (alg none)');
  });
  it('compares exp with iat only when iat is a number (a string iat is not coerced)', () => {
    const jwt = `${b64({ alg: 'HS256' })}.${b64({ exp: 1000, iat: '9999999999' })}.sig`;
    expect(reasonOf(answer(jwt))).toBeUndefined();
    const bad = `${b64({ alg: 'HS256' })}.${b64({ exp: 1000, iat: 9999999999 })}.sig`;
    expect(reasonOf(answer(bad))).toBe('JWT exp is not after iat');
  });
});

describe('"crit" in the answer', () => {
  it('refuses a crit that is not an array', () => {
    expect(reasonOf(answer(undefined, { crit: 'binding' }))).toBe(NOT_A_LIST);
  });
  it('refuses an empty crit list', () => {
    expect(reasonOf(answer(undefined, { crit: [] }))).toBe(NOT_A_LIST);
  });
  it('accepts sixteen names as a list (refused only because none is understood) but not seventeen', () => {
    const names = (n: number) => Array.from({ length: n }, (_, i) => `field${'abcdefghijklmnopq'[i]}`);
    expect(reasonOf(answer(undefined, { crit: names(16) }))).toMatch(UNKNOWN_CRIT);
    expect(reasonOf(answer(undefined, { crit: names(17) }))).toBe(NOT_A_LIST);
  });
  it('refuses a list where only some entries are field names', () => {
    expect(reasonOf(answer(undefined, { crit: ['binding', 'Bad-Name!'] }))).toBe(NOT_A_LIST);
  });
  it('refuses a non-string entry even when its string form looks like a field name', () => {
    expect(reasonOf(answer(undefined, { crit: [['binding']] }))).toBe(NOT_A_LIST);
  });
  it('names a well-formed but unknown critical field in the refusal', () => {
    expect(reasonOf(answer(undefined, { crit: ['binding'] }))).toMatch(/^the authority marks "binding" critical/);
  });
});
