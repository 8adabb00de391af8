import { describe, expect, it } from 'vitest';
import type { Revocation } from '../../src/core/protocol.js';
import { decideRevocation } from '../../src/sidecar/revocations.js';

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
