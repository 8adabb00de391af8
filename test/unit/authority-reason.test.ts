import { describe, expect, it } from 'vitest';
import { authorityReason, MAX_REASON } from '../../src/sidecar/credentials/authority-reason.js';

/** The authority's refusal message as the sidecar logs it and shows it on /readyz: bounded, one line, no secret. */
const body = (message: unknown) => ({ error: { code: 'LEASH_ERR_UNAUTHENTICATED', message } });

describe('authorityReason', () => {
  it("keeps the authority's words", () => {
    expect(authorityReason(body('join token is invalid, expired or already used'))).toBe('join token is invalid, expired or already used');
  });

  it('no message, or not a string: nothing', () => {
    for (const b of [null, undefined, 'text', {}, { error: {} }, body(42), body({ m: 'x' }), body(['x']), body('   ')]) expect(authorityReason(b)).toBeUndefined();
  });

  it('control, format and non-ASCII characters become spaces: one line, no terminal escapes, no bidi tricks', () => {
    expect(authorityReason(body('refused\r\n{"level":"info","msg":"forged"}\u001b[2J\u202e\u0000end'))).toBe('refused {"level":"info","msg":"forged"} [2J end');
  });

  it(`at most ${MAX_REASON} characters, however long the message`, () => {
    const r = authorityReason(body('word '.repeat(100_000)))!;
    expect(r.length).toBeLessThanOrEqual(MAX_REASON);
    expect(r.endsWith('…')).toBe(true);
  });

  it('secret-shaped words and join tokens are redacted, wherever they sit', () => {
    const secrets = ['sk-proj-Abcdefghij0123456789XYZabc', 'leash_jt_AbCdEf0123456789AbCdEf0123456789AbCdEf01234', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', 'ghp_0123456789abcdefABCDEF0123456789abcd'];
    for (const s of secrets) {
      for (const text of [`bad ${s}`, `key="${s}"`, `token=${s};`, `(${s})`]) {
        const r = authorityReason(body(text))!;
        expect(r).not.toContain(s.slice(4, 20));
        expect(r).toContain('[redacted]');
      }
    }
    // Ordinary words, codes and SPIFFE IDs are kept.
    expect(authorityReason(body('client certificate refused: spiffe://leash.local/join/agent-7 is revoked'))).toBe(
      'client certificate refused: spiffe://leash.local/join/agent-7 is revoked',
    );
  });
});
