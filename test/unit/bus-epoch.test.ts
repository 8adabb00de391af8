import { describe, expect, it } from 'vitest';
import { RevocationMemory } from '../../src/authority/revocation-memory.js';
import { persistenceOf } from '../../src/authority/redis-persistence.js';
import { epochReset } from '../../src/bus/epoch.js';
import { epochKeyOf, hashTagged } from '../../src/core/protocol.js';

describe('stream epoch', () => {
  it('the epoch key keeps the stream key hash slot (hash tag)', () => {
    expect(epochKeyOf('leash:revocations')).toBe('{leash:revocations}:epoch');
    expect(epochKeyOf('{leash}:revocations')).toBe('{leash}:revocations:epoch');
    expect(hashTagged('a{}b:revocations')).toBe('a{}b:revocations'); // no usable tag, cannot be wrapped (config prefixes have no braces)
    expect(hashTagged('odd}key')).toBe('odd}key'); // cannot be wrapped
  });

  it('a reset is any change from a remembered epoch, absence included; nothing to compare is not one', () => {
    expect(epochReset(undefined, 'e1')).toBe(false);
    expect(epochReset(null, 'e1')).toBe(false);
    expect(epochReset(null, null)).toBe(false);
    expect(epochReset('e1', 'e1')).toBe(false);
    expect(epochReset('e1', 'e2')).toBe(true);
    expect(epochReset('e1', null)).toBe(true);
  });
});

describe('redis persistence verdict', () => {
  it('aof, rdb, none, unknown', () => {
    expect(persistenceOf('yes', '')).toEqual({ kind: 'aof' });
    expect(persistenceOf('no', '3600 1 300 100')).toEqual({ kind: 'rdb', save: '3600 1 300 100' });
    expect(persistenceOf('no', '')).toEqual({ kind: 'none' });
    expect(persistenceOf(undefined, '').kind).toBe('unknown');
  });
});

describe('revocation memory', () => {
  it('keeps instance marks until they end and revocations for the window, in order, bounded', () => {
    const m = new RevocationMemory(1_000, 3);
    const at = (ms: number) => new Date(ms).toISOString();
    m.markInstance('i1', 5_000);
    m.markInstance('i1', 4_000); // never shortened
    m.published({ id: '1-0', scope: 'lease', target: 'l1', reason: '', at: at(1_000), by: 'a' });
    m.published({ id: '2-0', scope: 'all', target: '*', reason: '', at: at(2_500), by: 'a' });
    expect(m.plan(2_100)).toEqual({ instances: [{ identity: 'i1', untilMs: 5_000 }], revocations: [expect.objectContaining({ id: '2-0' })] });
    expect(m.plan(5_000)).toEqual({ instances: [], revocations: [] });
    for (let i = 0; i < 5; i++) m.published({ id: `${10 + i}-0`, scope: 'lease', target: `l${i}`, reason: '', at: at(9_000), by: 'a' });
    expect(m.plan(9_000).revocations.map((r) => r.id)).toEqual(['12-0', '13-0', '14-0']);
  });
});
