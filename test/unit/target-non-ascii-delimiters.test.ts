import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../../src/core/errors.js';
import { parseTarget, readsAsDelimiter } from '../../src/sidecar/proxy/target.js';

/**
 * A non-ASCII segment that NFKC leaves as it is (`é`, `名`) is refused only for what an
 * ASCII segment would be refused for: an encoded `;`, `?`, `#` or `%` next to it is the
 * same plain character it is in `a%3Bb` (target.ts readsAsDelimiter asks whether
 * normalising *changes* the segment into a delimiter).
 */
describe('non-ASCII segments that normalisation leaves unchanged', () => {
  const cases: [string, string][] = [
    ['caf%C3%A9%3Bv2', 'café;v2'],
    ['caf%C3%A9%3Fx', 'café?x'],
    ['%E5%90%8D%23tag', '名#tag'],
    ['%C3%A9%25', 'é%'],
  ];
  it.each(cases)('/r/v1/%s is the one segment %j, as its ASCII counterpart would be', (raw, decoded) => {
    expect(readsAsDelimiter(decoded)).toBe(false);
    const t = parseTarget(`/r/v1/${raw}`);
    if (t instanceof Error) throw t;
    expect(t.segments).toEqual(['v1', decoded]);
    expect(t.rawPath).toBe(`/v1/${raw}`);
    // The ASCII counterpart: accepted the same way.
    expect(parseTarget(`/r/v1/cafe${raw.slice(raw.lastIndexOf('%'))}`)).not.toBeInstanceOf(Error);
  });

  it('while one that normalisation turns into a delimiter is refused', () => {
    expect(parseTarget('/r/v1/caf%C3%A9%EF%BC%9Bv2')).toBeInstanceOf(BadRequestError); // ；
  });
});
