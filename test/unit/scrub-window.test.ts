import { afterEach, describe, expect, it } from 'vitest';
import { FILE_VALUES_KEPT, LEASE_EXPIRY_GRACE_MS, LEASE_VALUES_KEPT, ValueHistory } from '../../src/sidecar/credentials/value-history.js';
import { REDACTED } from '../../src/sidecar/proxy/scrub.js';
import { closeLeasedRoutes, LEASE_TTL_S, leasedRouteRuntime } from '../helpers/leased-route.js';

/**
 * The scrubbing window: a route's scrubber covers every value it held until that value's
 * window ends (a lease's expiry plus grace; a bounded history for files), is rebuilt only
 * when that set changes, and lets values go when their window ends. Clock injected.
 */
const TTL_S = LEASE_TTL_S;

afterEach(closeLeasedRoutes);

const leasedRoute = () => leasedRouteRuntime((n) => `leased-secret-${n}-9f8e7d6c5b4a3210`);

describe('a leased route scrubs every value it held until that value expires', () => {
  it('three values after two forced refreshes are all scrubbed, by a request that carried none of them', async () => {
    const { clock, authority, lease, route } = leasedRoute();
    await lease.start();
    clock.now += 1_000;
    await lease.refresh(lease.current()); // an upstream 401 for the current value
    clock.now += 1_000;
    await lease.refresh(lease.current());
    const [a, b, c] = authority.issued as [string, string, string];
    expect(lease.current()!.value).toBe(c);
    const scrubber = route.scrubberFor(undefined);
    expect(scrubber.whole(`old ${a}, older ${b}, now ${c}`)).toBe(`old ${REDACTED}, older ${REDACTED}, now ${REDACTED}`);
    expect(scrubber.full(`{"error":"Incorrect API key provided: ${a}"}`)).toBe(`{"error":"Incorrect API key provided: ${REDACTED}"}`);
  });

  it('a revoked lease stays scrubbed: revocation at the authority does not end its validity upstream', async () => {
    const { authority, lease, route } = leasedRoute();
    await lease.start();
    await lease.revoke('test', true);
    const [a, b] = authority.issued as [string, string];
    expect(lease.current()!.value).toBe(b);
    expect(route.currentScrubber().whole(`k=${a}`)).toBe(`k=${REDACTED}`);
  });

  it('the scrubber is cached while the set is unchanged, and rebuilt when a value expires (after the grace) or is added', async () => {
    const { clock, authority, lease, route } = leasedRoute();
    await lease.start();
    clock.now += 10_000;
    await lease.refresh(lease.current());
    const [a, b] = authority.issued as [string, string];
    const first = route.currentScrubber();
    expect(route.currentScrubber()).toBe(first);
    expect(route.scrubberFor(lease.current())).toBe(first);

    // A's lease ends at +60 s; it is kept for the grace after that, then let go.
    clock.now += TTL_S * 1000 - 10_000 + LEASE_EXPIRY_GRACE_MS - 1;
    expect(route.currentScrubber()).toBe(first);
    clock.now += 1;
    const second = route.currentScrubber();
    expect(second).not.toBe(first);
    expect(second.whole(`${a} ${b}`)).toBe(`${a} ${REDACTED}`);
    expect(route.currentScrubber()).toBe(second);

    await lease.refresh(lease.current());
    const third = route.currentScrubber();
    expect(third).not.toBe(second);
    expect(third.whole(`${b} ${authority.issued[2]}`)).toBe(`${REDACTED} ${REDACTED}`);
  });

  it('a request that carried an expired value still has it scrubbed from its own answer', async () => {
    const { clock, authority, lease, route } = leasedRoute();
    await lease.start();
    const carried = lease.current()!;
    clock.now += 1_000;
    await lease.refresh(carried);
    clock.now += TTL_S * 1000 + LEASE_EXPIRY_GRACE_MS;
    const [a] = authority.issued as [string];
    expect(route.currentScrubber().whole(a)).toBe(a);
    expect(route.scrubberFor(carried).whole(`Bearer ${a}`)).toBe(REDACTED);
  });
});

describe('ValueHistory', () => {
  it('keeps values newest first, each until its end (+ grace), at most `limit`', () => {
    const h = new ValueHistory(3, 100);
    h.add('v1', 1_000);
    h.add('v2', 2_000);
    h.add('v3', undefined);
    expect(h.values(0)).toEqual(['v3', 'v2', 'v1']);
    expect(h.values(1_099)).toEqual(['v3', 'v2', 'v1']);
    expect(h.values(1_100)).toEqual(['v3', 'v2']);
    h.add('v4', 5_000);
    h.add('v5', 5_000);
    expect(h.values(1_200)).toEqual(['v5', 'v4', 'v3']);
    expect(h.values(10_000)).toEqual(['v3']);
  });

  it('returns the same array while the set is unchanged (so the route can cache its scrubber)', () => {
    const h = new ValueHistory(4);
    h.add('a', 1_000);
    const first = h.values(0);
    expect(h.values(500)).toBe(first);
    h.add('b', undefined);
    expect(h.values(500)).not.toBe(first);
    expect(Object.isFrozen(h.values(500))).toBe(true);
  });

  it('a value seen again moves to the front and keeps the later end', () => {
    const h = new ValueHistory(4);
    h.add('a', 1_000);
    h.add('b', 1_000);
    h.add('a', 500);
    expect(h.values(0)).toEqual(['a', 'b']);
    expect(h.values(999)).toEqual(['a', 'b']);
    h.clear();
    expect(h.values(0)).toEqual([]);
  });

  it('the documented bounds', () => {
    expect(LEASE_VALUES_KEPT).toBe(32);
    expect(FILE_VALUES_KEPT).toBe(8);
    expect(LEASE_EXPIRY_GRACE_MS).toBe(60_000);
  });
});
