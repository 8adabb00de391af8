import { describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { AuthFailureRefresher } from '../../src/sidecar/credentials/auth-failure.js';
import type { CredentialProvider, HeldCredential } from '../../src/sidecar/credentials/types.js';

/** The refresher loop around decide/settle: what it skips, what it joins, what it reports. */

const clock: Clock = { monotonicMs: () => 1_000, nowMs: () => 1_000 } as unknown as Clock;
const cred = (fp: string): HeldCredential => ({ value: `v-${fp}`, fingerprint: fp, lease: `L-${fp}` }) as unknown as HeldCredential;

function setup(held: HeldCredential | undefined, refreshTo: () => HeldCredential | undefined, gate?: Promise<void>) {
  let current = held;
  const calls = { refresh: 0, skipped: [] as string[], refused: [] as string[], failed: [] as unknown[] };
  const provider = {
    description: 'test',
    current: () => current,
    recentValues: () => [],
    refresh: async () => {
      calls.refresh++;
      await gate;
      current = refreshTo();
    },
  } as unknown as CredentialProvider;
  const r = new AuthFailureRefresher(provider, clock, {
    skipped: (s) => calls.skipped.push(s),
    refusedValue: (fp) => calls.refused.push(fp),
    failed: (e) => calls.failed.push(e),
  });
  return { r, calls };
}

describe('AuthFailureRefresher', () => {
  it('with nothing held and no refused credential named, it is stale: no refresh', () => {
    const { r, calls } = setup(undefined, () => undefined);
    expect(r.onAuthFailure(undefined)).toBeUndefined();
    expect(calls).toMatchObject({ refresh: 0, skipped: ['stale'] });
  });

  it('a refused credential while nothing is held is stale (no crash)', () => {
    const { r, calls } = setup(undefined, () => undefined);
    expect(r.onAuthFailure(cred('a'))).toBeUndefined();
    expect(calls).toMatchObject({ refresh: 0, skipped: ['stale'] });
  });

  it('a refresh that leaves nothing held settles without error', async () => {
    const { r, calls } = setup(cred('a'), () => undefined);
    await expect(r.onAuthFailure(cred('a'))).resolves.toBeUndefined();
    expect(calls.refresh).toBe(1);
    expect(calls.failed).toEqual([]);
  });

  it('a refresh that brings a new value reports no refused value', async () => {
    const fresh = setup(cred('a'), () => cred('b'));
    await fresh.r.onAuthFailure(cred('a'));
    expect(fresh.calls.refused).toEqual([]);
  });

  it('joins the refresh under way; a stale 401 meanwhile gets nothing to wait on', async () => {
    let open!: () => void;
    const gate = new Promise<void>((res) => (open = res));
    const { r, calls } = setup(cred('a'), () => cred('b'), gate);
    const first = r.onAuthFailure(cred('a'));
    expect(r.onAuthFailure(cred('a'))).toBe(first);
    expect(r.onAuthFailure(cred('old'))).toBeUndefined();
    open();
    await first;
    expect(calls.refresh).toBe(1);
    expect(calls.skipped).toEqual(['coalesced', 'stale']);
  });

  it('a refresh that throws is reported through failed, and the call still settles', async () => {
    const { r, calls } = setup(cred('a'), () => {
      throw new Error('boom');
    });
    await expect(r.onAuthFailure(cred('a'))).resolves.toBeUndefined();
    expect(calls.failed).toHaveLength(1);
    expect((calls.failed[0] as Error).message).toBe('boom');
  });
});
