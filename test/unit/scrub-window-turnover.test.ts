import { afterEach, describe, expect, it } from 'vitest';
import { LEASE_EXPIRY_GRACE_MS } from '../../src/sidecar/credentials/value-history.js';
import { REDACTED } from '../../src/sidecar/proxy/scrub.js';
import { closeLeasedRoutes, leasedRouteRuntime } from '../helpers/leased-route.js';

/**
 * The route's cached scrubber (route.ts currentScrubber) is rebuilt whenever the set of
 * values it must cover changes, also when the set keeps its size: two leases expiring
 * while two new ones arrive, with no request in between. Clock injected.
 */
afterEach(closeLeasedRoutes);

describe("a route's scrubber follows its values when their number stays the same", () => {
  it('two values expired and two new ones held since the last request: the new ones are scrubbed, also the one the request did not carry', async () => {
    const { clock, authority, lease, route } = leasedRouteRuntime((n) => `leased-turnover-${n}-3c5e7a9b1d2f4e6a`);

    await lease.start(); // a, until +60 s (+ grace)
    clock.now += 10_000;
    await lease.refresh(lease.current()); // b, until +70 s
    const [a, b] = authority.issued as [string, string];
    expect(route.scrubberFor(lease.current()).whole(`${a} ${b}`)).toBe(`${REDACTED} ${REDACTED}`);

    // No request for a while: c and d arrive (forced refreshes), then a and b expire.
    clock.now += 10_000;
    await lease.refresh(lease.current()); // c, until +80 s
    clock.now += 5_000;
    await lease.refresh(lease.current()); // d, until +85 s
    const carried = lease.current()!;
    const [, , c, d] = authority.issued as [string, string, string, string];
    expect(carried.value).toBe(d);
    clock.now = 1_000_000 + 70_000 + LEASE_EXPIRY_GRACE_MS + 1;

    // The answer to a request that carried d echoes c too (an upstream's error listing keys).
    const scrubber = route.scrubberFor(carried);
    expect(scrubber.whole(`now ${d}, before ${c}`)).toBe(`now ${REDACTED}, before ${REDACTED}`);
    expect(scrubber.full(`{"error":"key ${c} was rotated"}`)).toBe(`{"error":"key ${REDACTED} was rotated"}`);
    expect(route.currentScrubber().whole(`${c} ${d}`)).toBe(`${REDACTED} ${REDACTED}`);
    // a and b are past their window: no longer in the set.
    expect(route.currentScrubber().whole(a)).toBe(a);
  });
});
