import { describe, expect, it } from 'vitest';
import { compilePolicy, decide, isSpiffeId, PolicyError, type PolicyRule } from '../../src/authority/policy/policy.js';

/**
 * compilePolicy refuses a bad policies section as a whole, naming each problem by key path
 * (STYLE 2); the compiled policy cannot be changed afterwards; SPIFFE IDs have limits.
 */
const TD = 'leash.local';
const H = 3_600_000;
const rule = (identities: unknown[], credentials: unknown[], maxTtlMs: unknown = H) => ({ identities, credentials, maxTtlMs }) as unknown as PolicyRule;

function issuesOf(rules: PolicyRule[]): readonly string[] {
  try {
    compilePolicy(rules, TD);
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return (e as PolicyError).issues;
  }
  throw new Error('compilePolicy accepted it');
}

describe('compilePolicy: every problem, by key path', () => {
  it('an identity pattern without spiffe:// or join:, or not a string', () => {
    expect(issuesOf([rule(['prod-*'], ['a'])])).toEqual(['policies[0].identities[0]: must start with "spiffe://" or "join:" (got "prod-*")']);
    expect(issuesOf([rule(['join:a-*', 42], ['a'])])).toEqual(['policies[0].identities[1]: must be a string']);
  });
  it('a credential that is not a name or "*"', () => {
    expect(issuesOf([rule(['join:a-*'], ['ok', 'Bad Name'])])).toEqual(['policies[0].credentials[1]: must be a credential name or "*" (got "Bad Name")']);
    expect(issuesOf([rule(['join:a-*'], [42])])).toEqual(['policies[0].credentials[0]: must be a credential name or "*" (got 42)']);
  });
  it('a maxTtl that is not a positive finite number', () => {
    for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '1h']) {
      expect(issuesOf([rule(['join:a-*'], ['a'], ttl)])).toEqual([`policies[0].maxTtl: must be a positive duration (got ${JSON.stringify(ttl)})`]);
    }
  });
  it('one problem is the message; several are listed under one heading', () => {
    expect(() => compilePolicy([rule(['prod'], ['a'])], TD)).toThrow(/^policies\[0\]\.identities\[0\]: must start with "spiffe:\/\/" or "join:" \(got "prod"\)$/);
    let err: PolicyError | undefined;
    try {
      compilePolicy([rule(['prod'], ['a']), rule(['join:x'], ['B A D'])], TD);
    } catch (e) {
      err = e as PolicyError;
    }
    expect(err!.code).toBe('LEASH_ERR_POLICY');
    expect(err!.message).toBe(`invalid policies:\n  ${err!.issues.join('\n  ')}`);
    expect(err!.issues).toHaveLength(2);
  });
});

describe('identity patterns', () => {
  it('a spiffe:// pattern needs a path after the trust domain', () => {
    expect(issuesOf([rule(['spiffe://leash.local'], ['a'])])).toEqual([
      'policies[0].identities[0]: must be spiffe://<trust domain>/<path> with only [A-Za-z0-9._-], / and * (got "spiffe://leash.local")',
    ]);
  });
  it('what follows ** is still matched literally (** never widens past its own characters)', () => {
    const p = compilePolicy([rule([`spiffe://${TD}/deep/**xpod`], ['a'])], TD);
    expect(decide(p, `spiffe://${TD}/deep/a/b-xpod`, 'a').allowed).toBe(true);
    expect(decide(p, `spiffe://${TD}/deep/a/b-ypod`, 'a').allowed).toBe(false);
    expect(decide(p, `spiffe://${TD}/deep/a/b-pod`, 'a').allowed).toBe(false);
  });
});

describe('the compiled policy is frozen, all the way down', () => {
  it('rules, their lists and the policy itself cannot be changed', () => {
    const p = compilePolicy([rule(['join:a-*'], ['a'])], TD);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.rules)).toBe(true);
    expect(Object.isFrozen(p.rules[0])).toBe(true);
    expect(Object.isFrozen(p.rules[0]!.credentials)).toBe(true);
    expect(Object.isFrozen(p.rules[0]!.identities)).toBe(true);
    expect(() => (p.rules[0]!.credentials as string[]).push('*')).toThrow();
    expect(decide(p, `spiffe://${TD}/join/a-1`, 'other').allowed).toBe(false);
  });
});

describe('SPIFFE ID limits', () => {
  const base = `spiffe://${TD}/`;
  it('at most 2048 characters', () => {
    expect(isSpiffeId(base + 'a'.repeat(2048 - base.length))).toBe(true);
    expect(isSpiffeId(base + 'a'.repeat(2049 - base.length))).toBe(false);
  });
  it('a trust domain alone, or a bad trust domain, is not an identity', () => {
    expect(isSpiffeId(`spiffe://${TD}`)).toBe(false);
    expect(isSpiffeId('spiffe://Leash.Local/x')).toBe(false);
    expect(isSpiffeId('spiffe:///x')).toBe(false);
  });
  it('a long identity is cut to 256 characters in a refusal', () => {
    const p = compilePolicy([], TD);
    const long = base + 'x'.repeat(400);
    const d = decide(p, long, 'a');
    expect(d.allowed).toBe(false);
    if (!d.allowed) {
      expect(d.reason).toContain(`"${long.slice(0, 256)}…"`);
      expect(d.reason).not.toContain(long.slice(0, 257));
    }
  });
});
