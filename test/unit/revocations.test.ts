import { describe, expect, it } from 'vitest';
import type { Revocation } from '../../src/core/protocol.js';
import { cutsExchange, decideRevocation, exchangesToCut } from '../../src/sidecar/revocations.js';

const rev = (scope: Revocation['scope'], target: string): Revocation => ({ id: '1-0', scope, target, reason: '', at: new Date().toISOString(), by: 'test' });
const ME = 'spiffe://leash.local/join/a-1';
const held = [
  { route: 'search', credential: 'search', leaseIds: ['L1', 'L0'] },
  { route: 'search2', credential: 'search', leaseIds: ['L2'] },
  { route: 'openai', credential: 'openai', leaseIds: ['L3'] },
];

describe('decideRevocation (DESIGN §7)', () => {
  it('lease: only the route holding it (current or predecessor) re-leases', () => {
    expect(decideRevocation(rev('lease', 'L0'), ME, held)).toEqual({ kind: 're-lease', routes: ['search'] });
    expect(decideRevocation(rev('lease', 'L3'), ME, held)).toEqual({ kind: 're-lease', routes: ['openai'] });
    expect(decideRevocation(rev('lease', 'nope'), ME, held)).toEqual({ kind: 'none' });
  });
  it('instance: this instance is cut off; another instance changes nothing here', () => {
    expect(decideRevocation(rev('instance', ME), ME, held)).toEqual({ kind: 'cut-off' });
    expect(decideRevocation(rev('instance', 'spiffe://leash.local/join/a-2'), ME, held)).toEqual({ kind: 'none' });
    expect(decideRevocation(rev('instance', ME), undefined, held)).toEqual({ kind: 'none' });
  });
  it('credential: every route leasing it', () => {
    expect(decideRevocation(rev('credential', 'search'), ME, held)).toEqual({ kind: 're-lease', routes: ['search', 'search2'] });
    expect(decideRevocation(rev('credential', 'other'), ME, held)).toEqual({ kind: 'none' });
  });
  it('all: every leased route', () => {
    expect(decideRevocation(rev('all', '*'), ME, held)).toEqual({ kind: 're-lease', routes: ['search', 'search2', 'openai'] });
    expect(decideRevocation(rev('all', '*'), ME, [])).toEqual({ kind: 'none' });
  });
});

describe('exchangesToCut / cutsExchange: which open exchanges a revocation ends', () => {
  const routes = held.map((h) => h.route);
  const cut = (r: Revocation, route: string, lease: string | undefined) => cutsExchange(exchangesToCut(r, decideRevocation(r, ME, held), routes), route, lease);
  it('lease: exactly that lease, wherever it is open, even when no route holds it any more (a stream older than two rotations)', () => {
    expect(cut(rev('lease', 'L0'), 'search', 'L0')).toBe(true);
    expect(cut(rev('lease', 'L0'), 'search', 'L1')).toBe(false);
    expect(cut(rev('lease', 'Lold'), 'search', 'Lold')).toBe(true);
    expect(cut(rev('lease', 'L0'), 'openai', 'L3')).toBe(false);
  });
  it('credential and all: every lease of the routes that re-lease; other routes untouched', () => {
    expect(cut(rev('credential', 'search'), 'search', 'L1')).toBe(true);
    expect(cut(rev('credential', 'search'), 'search2', 'L2')).toBe(true);
    expect(cut(rev('credential', 'search'), 'openai', 'L3')).toBe(false);
    for (const r of routes) expect(cut(rev('all', '*'), r, 'Lx')).toBe(true);
  });
  it('instance: every leased route when it is this one; nothing for another instance', () => {
    for (const r of routes) expect(cut(rev('instance', ME), r, 'Lx')).toBe(true);
    for (const r of routes) expect(cut(rev('instance', 'spiffe://leash.local/join/a-2'), r, 'Lx')).toBe(false);
  });
  it('an exchange without a lease (a static credential) is never cut by a revocation', () => {
    for (const r of [rev('instance', ME), rev('all', '*'), rev('credential', 'search')]) expect(cut(r, 'search', undefined)).toBe(false);
  });
});
