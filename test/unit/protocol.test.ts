import { describe, expect, it } from 'vitest';
import {
  auditKey,
  CLAIMS,
  compareIds,
  DEFAULT_KEY_PREFIX,
  epochKeyOf,
  isStreamId,
  KEY_PREFIX_PATTERN,
  leashTokenFacts,
  parseAuditEntry,
  parseRevocation,
  parseRevocationEntry,
  parseRevocationMessage,
  REVOCATION_SCOPES,
  revocationFields,
  revocationsKey,
  storeKeys,
  streamFields,
  type ParsedRevocation,
  type Revocation,
  minIdBefore,
  redisTimeMs,
  streamIdMs,
} from '../../src/core/protocol.js';

/**
 * core/protocol.ts: the one parser of revocation stream entries and pub/sub messages (used
 * by the Redis bus, the verifier's backfill and the in-process bus), the Redis key names and
 * the JWT claims. Key names, claim names and refusal texts are a contract (DESIGN §7, §8,
 * docs/revocation.md): these tests pin them.
 */
const AT = '2026-11-26T10:00:00.000Z';
const good: Revocation = { id: '1764151200000-0', scope: 'credential', target: 'openai', reason: 'leaked', at: AT, by: 'alice' };
const { id: _id, ...fields } = good;

const refused = (p: ParsedRevocation) => (p.ok ? { ok: true } : { reason: p.reason, message: p.message });

describe('parseRevocation (fields + stream id)', () => {
  it('accepts a good revocation of every scope, as is', () => {
    for (const scope of REVOCATION_SCOPES) {
      const p = parseRevocation({ ...fields, scope }, good.id);
      expect(p).toEqual({ ok: true, revocation: { ...good, scope } });
    }
    expect(REVOCATION_SCOPES).toEqual(['lease', 'instance', 'credential', 'all']);
  });

  it('reason and by are optional ("" when absent or not strings) and cut to 512 and 128 characters', () => {
    const p = parseRevocation({ scope: 'lease', target: 'l', at: AT, reason: 7, by: null }, '1-0');
    expect(p).toEqual({ ok: true, revocation: { id: '1-0', scope: 'lease', target: 'l', at: AT, reason: '', by: '' } });
    const long = parseRevocation({ ...fields, reason: 'r'.repeat(600), by: 'b'.repeat(200) }, good.id);
    expect(long.ok && long.revocation.reason).toBe('r'.repeat(512));
    expect(long.ok && long.revocation.by).toBe('b'.repeat(128));
  });

  it('ignores fields it does not know', () => {
    expect(parseRevocation({ ...fields, extra: 'x', value: 'sk-not-a-field' }, good.id)).toEqual({ ok: true, revocation: good });
  });

  it('each missing or garbage field → its reason and text', () => {
    const cases: Array<[string, Record<string, unknown>, unknown, { reason: string; message: string }]> = [
      ['no id', fields, undefined, { reason: 'bad_id', message: 'bad id undefined' }],
      ['id not a stream id', fields, 'abc', { reason: 'bad_id', message: 'bad id "abc"' }],
      ['id with a tail', fields, '1-0x', { reason: 'bad_id', message: 'bad id "1-0x"' }],
      ['id a number', fields, 12, { reason: 'bad_id', message: 'bad id 12' }],
      ['long id, cut', fields, 'z'.repeat(100), { reason: 'bad_id', message: `bad id "${'z'.repeat(39)}` }],
      ['no scope', { ...fields, scope: undefined }, good.id, { reason: 'bad_scope', message: 'bad scope' }],
      ['scope in capitals', { ...fields, scope: 'LEASE' }, good.id, { reason: 'bad_scope', message: 'bad scope' }],
      ['scope not a string', { ...fields, scope: ['lease'] }, good.id, { reason: 'bad_scope', message: 'bad scope' }],
      ['scope with a space', { ...fields, scope: 'le ase' }, good.id, { reason: 'bad_scope', message: 'bad scope' }],
      ['scope over 32', { ...fields, scope: 'a'.repeat(33) }, good.id, { reason: 'bad_scope', message: 'bad scope' }],
      ['no at', { ...fields, at: undefined }, good.id, { reason: 'bad_at', message: 'bad at' }],
      ['at not a time', { ...fields, at: 'yesterday' }, good.id, { reason: 'bad_at', message: 'bad at' }],
      ['at a number', { ...fields, at: Date.parse(AT) }, good.id, { reason: 'bad_at', message: 'bad at' }],
      // Checked in order id, scope, at: the first fault is the one reported.
      ['everything wrong', { scope: 'x', target: '', at: 'never' }, 'x', { reason: 'bad_id', message: 'bad id "x"' }],
      ['scope and at wrong', { ...fields, scope: 'X', at: 'never' }, good.id, { reason: 'bad_scope', message: 'bad scope' }],
      ['unknown scope, at wrong', { ...fields, scope: 'planet', at: 'never' }, good.id, { reason: 'bad_at', message: 'bad at' }],
    ];
    for (const [name, f, id, want] of cases) expect(refused(parseRevocation(f, id)), name).toEqual(want);
    expect(parseRevocation({ ...fields, target: 'x'.repeat(2048) }, good.id).ok).toBe(true);
  });

  it('a scope it does not know, or a target it cannot read, is a revocation of everything before `at` (fail closed across versions)', () => {
    const all = (notUnderstood: { scope: string; target: string }) => ({ ok: true, revocation: { ...good, scope: 'all', target: '*', notUnderstood } });
    const cases: Array<[string, Record<string, unknown>, { scope: string; target: string }]> = [
      ['unknown scope', { ...fields, scope: 'planet' }, { scope: 'planet', target: 'openai' }],
      ['unknown scope, no target', { ...fields, scope: 'route', target: undefined }, { scope: 'route', target: '' }],
      ['no target', { ...fields, target: undefined }, { scope: 'credential', target: '' }],
      ['empty target', { ...fields, target: '' }, { scope: 'credential', target: '' }],
      ['target over 2048, not kept', { ...fields, target: 'x'.repeat(2049) }, { scope: 'credential', target: '' }],
      ['unknown scope, long target cut for logs', { ...fields, scope: 'route', target: 'y'.repeat(300) }, { scope: 'route', target: 'y'.repeat(128) }],
      ['target a number', { ...fields, target: 5 }, { scope: 'credential', target: '' }],
      ['a field it must understand (crit)', { ...fields, target: 'open*', crit: 'match', match: 'glob' }, { scope: 'credential', target: 'open*' }],
      ['crit of any shape', { ...fields, crit: ['x'] }, { scope: 'credential', target: 'openai' }],
    ];
    for (const [name, f, written] of cases) expect(parseRevocation(f, good.id), name).toEqual(all(written));
  });
});

describe('parseRevocationEntry (XRANGE) and parseRevocationMessage (pub/sub)', () => {
  it('a written entry reads back as the revocation (revocationFields is what XADD writes)', () => {
    const flat = revocationFields(good);
    expect(flat).toEqual(['scope', 'credential', 'target', 'openai', 'reason', 'leaked', 'at', AT, 'by', 'alice']);
    expect(parseRevocationEntry(good.id, flat)).toEqual({ ok: true, revocation: good });
  });

  it('a refused entry is named by its id; an odd trailing field is dropped', () => {
    expect(refused(parseRevocationEntry('5-1', ['scope', 'Planet', 'target', 'x', 'at', AT]))).toEqual({ reason: 'bad_scope', message: 'stream entry 5-1: bad scope' });
    expect(refused(parseRevocationEntry('5-2', ['garbage', 'only']))).toEqual({ reason: 'bad_scope', message: 'stream entry 5-2: bad scope' });
    expect(refused(parseRevocationEntry('5-3', ['scope', 'lease', 'at', AT]))).toEqual({ ok: true });
    expect(refused(parseRevocationEntry('5-4', [...revocationFields(good), 'target']))).toEqual({ ok: true });
    expect(refused(parseRevocationEntry('5-5', ['scope', 'lease', 'target', 'x', 'at']))).toEqual({ reason: 'bad_at', message: 'stream entry 5-5: bad at' });
  });

  it('a published message reads back as the revocation', () => {
    expect(parseRevocationMessage(JSON.stringify(good))).toEqual({ ok: true, revocation: good });
  });

  it('each kind of garbage message → its reason and text', () => {
    const cases: Array<[string, { reason: string; message: string }]> = [
      ['not json {', { reason: 'not_json', message: 'pub/sub message is not JSON' }],
      ['', { reason: 'not_json', message: 'pub/sub message is not JSON' }],
      ['42', { reason: 'not_object', message: 'pub/sub message is not an object' }],
      ['null', { reason: 'not_object', message: 'pub/sub message is not an object' }],
      ['"text"', { reason: 'not_object', message: 'pub/sub message is not an object' }],
      ['[]', { reason: 'bad_id', message: 'pub/sub message: bad id "undefined"' }],
      [JSON.stringify(fields), { reason: 'bad_id', message: 'pub/sub message: bad id "undefined"' }],
      [JSON.stringify({ ...good, id: 'abc' }), { reason: 'bad_id', message: 'pub/sub message: bad id "abc"' }],
      [JSON.stringify({ ...good, scope: 'Planet' }), { reason: 'bad_scope', message: 'pub/sub message: bad scope' }],
      [JSON.stringify({ ...good, at: 'yesterday' }), { reason: 'bad_at', message: 'pub/sub message: bad at' }],
    ];
    for (const [message, want] of cases) expect(refused(parseRevocationMessage(message)), message.slice(0, 60)).toEqual(want);
  });

  it('refusal texts stay short and never echo a field value', () => {
    // Fake, key-shaped: only its bytes are searched for in the refusal texts.
    const secretish = 'sk-live-0123456789abcdef0123456789abcdef';
    // An unreadable target makes a revocation not understood (as `all`): its target is not kept either.
    const unread = parseRevocationMessage(JSON.stringify({ ...good, target: secretish.repeat(100) }));
    expect(unread.ok && JSON.stringify(unread.revocation)).not.toContain(secretish);
    for (const p of [parseRevocationMessage(JSON.stringify({ ...good, scope: secretish })), parseRevocationEntry('9-9', ['scope', 'lease', 'target', 'x', 'at', secretish])]) {
      expect(p.ok).toBe(false);
      if (!p.ok) {
        expect(p.message).not.toContain(secretish);
        expect(p.message.length).toBeLessThan(200);
      }
    }
  });
});

describe('stream ids and fields', () => {
  it('compares ids by (ms, seq), not as text', () => {
    expect(compareIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareIds('10-2', '10-10')).toBeLessThan(0);
    expect(compareIds('10-10', '10-10')).toBe(0);
    expect(compareIds('11-0', '10-99')).toBeGreaterThan(0);
    expect([isStreamId('0-0'), isStreamId('1764151200000-3'), isStreamId('1-'), isStreamId('-1'), isStreamId(' 1-1'), isStreamId(undefined)]).toEqual([true, true, false, false, false, false]);
  });

  it('streamFields pairs XRANGE fields; audit entries carry their id unless they have a field of that name', () => {
    expect(streamFields(['a', '1', 'b', '2', 'c'])).toEqual({ a: '1', b: '2' });
    expect(streamFields(['a', '1', 'a', '2'])).toEqual({ a: '2' });
    expect(parseAuditEntry('3-0', ['event', 'usage', 'at', AT, 'v', '1'])).toEqual({ id: '3-0', event: 'usage', at: AT, v: '1' });
    expect(parseAuditEntry('3-1', ['event', 'x', 'id', 'own'])).toEqual({ id: 'own', event: 'x' });
  });
});

describe('Redis keys', () => {
  it('the default prefix and every key name (DESIGN §7, §8, docs/revocation.md)', () => {
    expect(DEFAULT_KEY_PREFIX).toBe('leash:');
    expect(revocationsKey()).toBe('leash:revocations');
    expect(auditKey()).toBe('leash:audit');
    expect(epochKeyOf(revocationsKey())).toBe('{leash:revocations}:epoch');
    expect(revocationsKey('team-a:')).toBe('team-a:revocations');
    expect(auditKey('team-a:')).toBe('team-a:audit');
    const k = storeKeys();
    expect([k.lease('L'), k.byInstance('I'), k.byCredential('C'), k.all, k.joinToken('H'), k.identity('I'), k.revokedInstance('I')]).toEqual([
      'leash:lease:L',
      'leash:leases:by-instance:I',
      'leash:leases:by-credential:C',
      'leash:leases:all',
      'leash:join:H',
      'leash:identity:I',
      'leash:revoked:instance:I',
    ]);
    expect(storeKeys('p:').lease('L')).toBe('p:lease:L');
  });

  it('a configured prefix has no braces (the epoch key hash tag relies on it)', () => {
    for (const ok of ['leash:', 'team_a-1:', 'x']) expect(KEY_PREFIX_PATTERN.test(ok), ok).toBe(true);
    for (const bad of ['', '{leash}:', 'a b', 'a}']) expect(KEY_PREFIX_PATTERN.test(bad), bad).toBe(false);
  });
});

describe('JWT claims', () => {
  const payload = { sub: 'spiffe://td/join/a', jti: 'lease-1', iat: 1_764_151_200, exp: 1_764_151_800, [CLAIMS.credential]: 'svc', [CLAIMS.issuedAtMs]: 1_764_151_200_345 };

  it('the claim names leash signs', () => {
    expect(CLAIMS).toEqual({ credential: 'leash_cred', issuedAtMs: 'leash_iat_ms' });
  });

  it('reads sub, jti, iat, exp, the credential and the issue time in ms', () => {
    expect(leashTokenFacts(payload)).toEqual({ sub: 'spiffe://td/join/a', jti: 'lease-1', iat: 1_764_151_200, exp: 1_764_151_800, credential: 'svc', issuedMs: 1_764_151_200_345 });
    const { [CLAIMS.credential]: _c, [CLAIMS.issuedAtMs]: _i, ...plain } = payload;
    // An authority that does not sign them: no credential, the earliest instant of iat's second.
    expect(leashTokenFacts(plain)).toEqual({ sub: 'spiffe://td/join/a', jti: 'lease-1', iat: 1_764_151_200, exp: 1_764_151_800, credential: undefined, issuedMs: 1_764_151_200_000 });
  });

  it('an issue time in ms inconsistent with iat (or not an integer) is ignored: fail closed', () => {
    for (const ms of [1_764_151_201_000, 1_764_151_199_999, 1_764_151_200_000.5, '1764151200345']) {
      expect(leashTokenFacts({ ...payload, [CLAIMS.issuedAtMs]: ms })?.issuedMs, String(ms)).toBe(1_764_151_200_000);
    }
  });

  it('a claim of the wrong type → undefined', () => {
    for (const bad of [{ sub: 1 }, { jti: null }, { iat: '1' }, { exp: undefined }, { [CLAIMS.credential]: 5 }]) {
      expect(leashTokenFacts({ ...payload, ...bad }), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('Redis clock readings', () => {
  it('redisTimeMs reads TIME replies as ms (strings or numbers), NaN for anything else', () => {
    expect(redisTimeMs(['1700000000', '123456'])).toBe(1_700_000_000_123);
    expect(redisTimeMs([1700000000, 999])).toBe(1_700_000_000_000);
    for (const bad of [undefined, null, 'x', [], ['1'], ['a', 'b'], ['1', '2', '3']]) expect(redisTimeMs(bad), JSON.stringify(bad)).toBeNaN();
  });

  it('streamIdMs takes the time part of a stream id, NaN for anything that is not one', () => {
    expect(streamIdMs('1700000000123-7')).toBe(1_700_000_000_123);
    for (const bad of [undefined, 42, '', '17-', '-3', '1700000000123', 'abc-1', '1-2-3']) expect(streamIdMs(bad), String(bad)).toBeNaN();
  });

  it('minIdBefore keeps maxAgeMs before the newest entry, never below 0-0', () => {
    expect(minIdBefore(10_000, 3_000)).toBe('7000-0');
    expect(minIdBefore(1_000, 3_000)).toBe('0-0');
  });
});
