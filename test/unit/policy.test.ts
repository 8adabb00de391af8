import { describe, expect, it } from 'vitest';
import { LeashError } from '../../src/core/errors.js';
import { compilePolicy, decide, isSpiffeId, PolicyError, type PolicyRule } from '../../src/authority/policy/policy.js';

const TD = 'leash.local';
const H = 3_600_000;
const rule = (identities: string[], credentials: string[], maxTtlMs = H): PolicyRule => ({ identities, credentials, maxTtlMs });
const id = (path: string) => `spiffe://${TD}/${path}`;

describe('compilePolicy / decide', () => {
  it('denies by default: no rules, nothing allowed', () => {
    const p = compilePolicy([], TD);
    const d = decide(p, id('join/demo-1'), 'openai');
    expect(d.allowed).toBe(false);
    if (!d.allowed) expect(d.reason).toBe(`no policy allows identity "${id('join/demo-1')}" to lease credential "openai"`);
  });

  it('the DESIGN §4 example', () => {
    const p = compilePolicy([rule([id('ns/agents/sa/doc-agent/*'), 'join:demo-*'], ['openai', 'search'])], TD);
    expect(decide(p, id('ns/agents/sa/doc-agent/pod-1'), 'openai')).toEqual({ allowed: true, maxTtlMs: H });
    expect(decide(p, id('join/demo-7'), 'search')).toEqual({ allowed: true, maxTtlMs: H });
    expect(decide(p, id('join/demo-7'), 'github').allowed).toBe(false);
    expect(decide(p, id('join/prod-1'), 'openai').allowed).toBe(false);
  });

  it('* stays within one segment, ** crosses segments', () => {
    const p = compilePolicy([rule([id('ns/*/sa/x')], ['a']), rule([id('deep/**')], ['b'])], TD);
    expect(decide(p, id('ns/agents/sa/x'), 'a').allowed).toBe(true);
    expect(decide(p, id('ns/agents/more/sa/x'), 'a').allowed).toBe(false);
    expect(decide(p, id('ns/sa/x'), 'a').allowed).toBe(false);
    expect(decide(p, id('deep/x'), 'b').allowed).toBe(true);
    expect(decide(p, id('deep/x/y/z'), 'b').allowed).toBe(true);
    expect(decide(p, id('deep'), 'b').allowed).toBe(false);
    expect(decide(p, id('deeper/x'), 'b').allowed).toBe(false);
  });

  it('* inside a segment and literal dots (no regex leaks)', () => {
    const p = compilePolicy([rule([id('sa/doc-*-agent')], ['a']), rule(['spiffe://leash.local/a.b'], ['b'])], TD);
    expect(decide(p, id('sa/doc-x-agent'), 'a').allowed).toBe(true);
    expect(decide(p, id('sa/doc--agent'), 'a').allowed).toBe(true);
    expect(decide(p, id('sa/doc-x/y-agent'), 'a').allowed).toBe(false);
    expect(decide(p, id('a.b'), 'b').allowed).toBe(true);
    expect(decide(p, id('axb'), 'b').allowed).toBe(false);
  });

  it('patterns are anchored: a prefix or suffix does not match', () => {
    const p = compilePolicy([rule([id('sa/x')], ['a'])], TD);
    expect(decide(p, id('sa/x'), 'a').allowed).toBe(true);
    expect(decide(p, id('sa/x/y'), 'a').allowed).toBe(false);
    expect(decide(p, id('pre/sa/x'), 'a').allowed).toBe(false);
    expect(decide(p, 'spiffe://evil.local/sa/x', 'a').allowed).toBe(false);
  });

  it('join: shorthand expands into the configured trust domain only', () => {
    const p = compilePolicy([rule(['join:worker-*'], ['a'])], TD);
    expect(p.rules[0]!.identities).toEqual([`spiffe://${TD}/join/worker-*`]);
    expect(decide(p, id('join/worker-1'), 'a').allowed).toBe(true);
    expect(decide(p, 'spiffe://other.local/join/worker-1', 'a').allowed).toBe(false);
    expect(decide(p, id('join/worker-1/x'), 'a').allowed).toBe(false);
    const exact = compilePolicy([rule(['join:ci'], ['a'])], TD);
    expect(decide(exact, id('join/ci'), 'a').allowed).toBe(true);
    expect(decide(exact, id('join/ci2'), 'a').allowed).toBe(false);
  });

  it('credentials: exact names or *', () => {
    const p = compilePolicy([rule(['join:a'], ['openai']), rule(['join:b'], ['*'])], TD);
    expect(decide(p, id('join/a'), 'openai').allowed).toBe(true);
    expect(decide(p, id('join/a'), 'openai2').allowed).toBe(false);
    expect(decide(p, id('join/a'), 'OPENAI').allowed).toBe(false);
    expect(decide(p, id('join/b'), 'anything').allowed).toBe(true);
  });

  it('identity and credential must match in the same rule', () => {
    const p = compilePolicy([rule(['join:a'], ['x']), rule(['join:b'], ['y'])], TD);
    expect(decide(p, id('join/a'), 'y').allowed).toBe(false);
    expect(decide(p, id('join/b'), 'x').allowed).toBe(false);
  });

  it('several matching rules: the LARGEST maxTtl wins, whatever the order', () => {
    const short = rule(['join:demo-*'], ['openai'], 5 * 60_000);
    const long = rule(['join:**'], ['*'], 2 * H);
    const other = rule(['join:demo-1'], ['search'], 10 * H); // matches the identity, not the credential
    expect(decide(compilePolicy([short, long, other], TD), id('join/demo-1'), 'openai')).toEqual({ allowed: true, maxTtlMs: 2 * H });
    expect(decide(compilePolicy([long, short, other], TD), id('join/demo-1'), 'openai')).toEqual({ allowed: true, maxTtlMs: 2 * H });
    expect(decide(compilePolicy([short], TD), id('join/demo-1'), 'openai')).toEqual({ allowed: true, maxTtlMs: 5 * 60_000 });
  });

  it('malformed identities are denied, whatever the globs (no path tricks through **)', () => {
    const p = compilePolicy([rule(['spiffe://leash.local/**'], ['*'])], TD);
    expect(decide(p, id('ns/a'), 'x').allowed).toBe(true);
    for (const bad of [
      id('ns/../admin'),
      id('ns/./a'),
      id('ns//a'),
      id('ns/a/'),
      id('ns/%2e%2e/a'),
      id('ns/a b'),
      'spiffe://leash.local',
      'spiffe://LEASH.local/a',
      'https://leash.local/a',
      '',
      `spiffe://leash.local/${'a'.repeat(3000)}`,
    ]) {
      const d = decide(p, bad, 'x');
      expect(d.allowed, bad).toBe(false);
      if (!d.allowed) expect(d.reason).toMatch(/is not a valid SPIFFE ID/);
    }
  });

  it('isSpiffeId', () => {
    expect(isSpiffeId('spiffe://leash.local/ns/agents/sa/x')).toBe(true);
    expect(isSpiffeId('spiffe://leash.local/join/demo-1.a_b')).toBe(true);
    expect(isSpiffeId('spiffe://leash.local/')).toBe(false);
    expect(isSpiffeId('spiffe:///a')).toBe(false);
  });

  it('invalid rules are refused with every problem and its key path', () => {
    let err: unknown;
    try {
      compilePolicy(
        [
          rule([], ['a']),
          rule(['leash.local/x', 'join:Bad/Name', 'spiffe://leash.local/a b'], []),
          rule(['join:ok'], ['a b', ''], 0),
          rule(['join:ok'], ['a'], Number.NaN),
        ],
        TD,
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    expect(err).toBeInstanceOf(LeashError);
    const e = err as PolicyError;
    expect(e.code).toBe('LEASH_ERR_POLICY');
    expect(e.issues).toEqual([
      'policies[0].identities: must list at least one identity pattern',
      'policies[1].identities[0]: must start with "spiffe://" or "join:" (got "leash.local/x")',
      'policies[1].identities[1]: "join:" must be followed by a name glob of [a-z0-9._-] and * (got "join:Bad/Name")',
      'policies[1].identities[2]: must be spiffe://<trust domain>/<path> with only [A-Za-z0-9._-], / and * (got "spiffe://leash.local/a b")',
      'policies[1].credentials: must list at least one credential name, or "*"',
      'policies[2].credentials[0]: must be a credential name or "*" (got "a b")',
      'policies[2].credentials[1]: must be a credential name or "*" (got "")',
      'policies[2].maxTtl: must be a positive duration (got 0)',
      'policies[3].maxTtl: must be a positive duration (got null)',
    ]);
  });

  it('refuses a bad trust domain', () => {
    expect(() => compilePolicy([], 'Leash Local')).toThrow(/^trustDomain: must be lowercase/);
  });

  it('the compiled policy is frozen and does not alias the input', () => {
    const input = [rule(['join:a'], ['x'])];
    const p = compilePolicy(input, TD);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.rules[0]!.credentials)).toBe(true);
    (input[0]!.credentials as string[]).push('y');
    expect(decide(p, id('join/a'), 'y').allowed).toBe(false);
  });
});
