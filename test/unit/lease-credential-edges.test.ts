import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';
import type { CredentialEvent, HeldCredential } from '../../src/sidecar/credentials/types.js';

/**
 * LeaseCredential edges: no lease call once revoked for good or closed, a refusal of a
 * credential no longer held is stale news, a lease landing after close is never held, an
 * expiry is reported once, and the forbidden-lease memory is bounded at exactly 1024.
 * The authority is an in-test LeaseSource (an interface the sidecar injects); the clock is
 * injected and moved by hand.
 */
function manualClock(): Clock & { advance(ms: number): void } {
  let mono = 1_000_000;
  return { monotonicMs: () => mono, wallMs: () => 1_700_000_000_000 + mono, advance: (ms) => void (mono += ms) };
}

function authority(ttlSeconds = 3_600) {
  let n = 0;
  const calls: string[] = [];
  const released: string[] = [];
  let gate: Promise<void> | undefined;
  const source: LeaseSource = {
    lease: async (credential) => {
      calls.push(credential);
      n++;
      const id = `L${n}`;
      if (gate) await gate;
      const value = `edge-test-value-${n}`;
      return { lease: id, credential, value, fingerprint: fingerprint(value), version: '1', issuedAt: new Date(0).toISOString(), expiresAt: new Date(ttlSeconds * 1000).toISOString(), ttlSeconds } satisfies LeaseResponse;
    },
    release: async (id) => void released.push(id),
  };
  const hold = () => {
    let open!: () => void;
    gate = new Promise<void>((r) => (open = r));
    return () => {
      gate = undefined;
      open();
    };
  };
  return { source, calls, released, hold };
}

describe('LeaseCredential: nothing is leased when it must not be', () => {
  it('after a revocation without re-lease, a refresh makes no lease call', async () => {
    const a = authority();
    const cred = new LeaseCredential('api', a.source, manualClock(), () => undefined);
    await cred.start();
    expect(a.calls).toHaveLength(1);
    await cred.revoke('identity revoked', false);
    await cred.refresh();
    expect(a.calls).toHaveLength(1);
    expect(cred.current()).toBeUndefined();
    await cred.close();
  });

  it('after close, a refresh makes no lease call', async () => {
    const a = authority();
    const cred = new LeaseCredential('api', a.source, manualClock(), () => undefined);
    await cred.start();
    await cred.close();
    await cred.refresh();
    expect(a.calls).toHaveLength(1);
    expect(cred.current()).toBeUndefined();
  });

  it('a refusal of a credential no longer held (already rotated) does not lease again', async () => {
    const a = authority();
    const cred = new LeaseCredential('api', a.source, manualClock(), () => undefined);
    await cred.start();
    const first = cred.current()!;
    await cred.refresh(first);
    expect(a.calls).toHaveLength(2);
    const p = cred.refresh(first); // stale: `first` was replaced
    expect(p).toBeInstanceOf(Promise);
    await p;
    expect(a.calls).toHaveLength(2);
    expect(cred.current()?.lease).toBe('L2');
    await cred.close();
  });

  it('a refusal arriving when nothing is held (dropped) is stale news too, not an error', async () => {
    const a = authority();
    const cred = new LeaseCredential('api', a.source, manualClock(), () => undefined);
    await cred.start();
    const first = cred.current()!;
    cred.drop('revoked (lease)');
    const p = cred.refresh(first);
    expect(p).toBeInstanceOf(Promise);
    await p;
    expect(a.calls).toHaveLength(1);
    await cred.close();
  });

  it('a lease that lands after close is released and never reported as acquired', async () => {
    const a = authority();
    const events: CredentialEvent[] = [];
    const cred = new LeaseCredential('api', a.source, manualClock(), (e) => events.push(e));
    const open = a.hold();
    const started = cred.start();
    const closing = cred.close();
    open();
    await Promise.all([started, closing]);
    expect(events).toEqual([]);
    expect(a.released).toEqual(['L1']);
    expect(cred.current()).toBeUndefined();
  });
});

describe('LeaseCredential: expiry', () => {
  it('reports an expired credential once, however often it is asked for', async () => {
    const a = authority(100);
    const clock = manualClock();
    const events: CredentialEvent[] = [];
    const cred = new LeaseCredential('api', a.source, clock, (e) => events.push(e));
    await cred.start();
    const held = cred.current()!;
    clock.advance(100_000);
    expect(cred.current()).toBeUndefined();
    expect(cred.current()).toBeUndefined();
    expect(events.filter((e) => e.kind === 'expired')).toEqual([{ kind: 'expired', fingerprint: held.fingerprint, lease: held.lease }]);
    await cred.close();
  });
});

describe('LeaseCredential: forbidden lease ids', () => {
  it('remembers exactly the last 1024 ids revoked while not held', async () => {
    const cred = new LeaseCredential('api', authority().source, manualClock(), () => undefined);
    for (let i = 0; i <= 1024; i++) cred.forbidLease(`F${i}`);
    const taken = (lease: string): HeldCredential => ({ value: 'v', fingerprint: fingerprint('v'), acquiredAtMs: 0, expiresAtMs: undefined, lease });
    expect(cred.stillSendable(taken('F0'), 0)).toBe(true); // the oldest, forgotten
    expect(cred.stillSendable(taken('F1'), 0)).toBe(false);
    expect(cred.stillSendable(taken('F1024'), 0)).toBe(false);
  });
});

describe('LeaseCredential: releasing displaced leases', () => {
  it('never releases the predecessor still kept for requests in flight when the authority re-issued the same lease id', async () => {
    const ids = ['P', 'X', 'X', 'Y'];
    let n = 0;
    const released: string[] = [];
    const source: LeaseSource = {
      lease: async (credential) => {
        const id = ids[n++]!;
        const value = `edge-test-value-${n}`;
        return { lease: id, credential, value, fingerprint: fingerprint(value), version: '1', issuedAt: new Date(0).toISOString(), expiresAt: new Date(3_600_000).toISOString(), ttlSeconds: 3_600 } satisfies LeaseResponse;
      },
      release: async (id) => void released.push(id),
    };
    const cred = new LeaseCredential('api', source, manualClock(), () => undefined);
    await cred.start(); // P
    await cred.refresh(cred.current()!); // X (P kept as predecessor)
    await cred.refresh(cred.current()!); // X again: P displaced and released
    await cred.refresh(cred.current()!); // Y: the predecessor is lease X, still in use
    expect(released).toEqual(['P']);
    expect(cred.leaseIds()).toEqual(['Y', 'X']);
    await cred.close();
  });
});
