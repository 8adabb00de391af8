import { describe, expect, it } from 'vitest';
import { MAX_REASON, authorityReason } from '../../src/sidecar/credentials/authority-reason.js';

const reason = (message: unknown) => authorityReason({ error: { message } });

describe('authority reason bounds', () => {
  it('a reason of exactly MAX_REASON characters is kept whole; one more is cut with an ellipsis', () => {
    const exact = 'a'.repeat(MAX_REASON);
    expect(reason(exact)).toBe(exact);
    const over = reason(`${exact}b`);
    expect(over).toBe(`${'a'.repeat(MAX_REASON - 1)}…`);
  });

  it('every run of whitespace becomes one space', () => {
    expect(reason('join   token\t\t expired')).toBe('join token expired');
  });

  it('only the first 4×MAX_REASON characters are read', () => {
    // Text past the bound is never looked at, even when everything before it is blank.
    expect(reason(`${' '.repeat(MAX_REASON * 4)}denied`)).toBeUndefined();
  });
});
