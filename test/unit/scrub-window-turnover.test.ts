import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';
import { LEASE_EXPIRY_GRACE_MS } from '../../src/sidecar/credentials/value-history.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { REDACTED } from '../../src/sidecar/proxy/scrub.js';

/**
 * The route's cached scrubber (route.ts currentScrubber) is rebuilt whenever the set of
 * values it must cover changes, also when the set keeps its size: two leases expiring
 * while two new ones arrive, with no request in between. Clock injected.
 */
const TTL_S = 60;

class ManualClock implements Clock {
  now = 1_000_000;
  monotonicMs(): number {
    return this.now;
  }
  wallMs(): number {
    return this.now;
  }
}

/** Hands out v-1, v-2, … as leases of TTL_S seconds. */
class Authority implements LeaseSource {
  issued: string[] = [];
  async lease(credential: string): Promise<LeaseResponse> {
    const n = this.issued.length + 1;
    const value = `leased-turnover-${n}-3c5e7a9b1d2f4e6a`;
    this.issued.push(value);
    const now = new Date();
    return {
      lease: `lease-${n}`,
      credential,
      value,
      fingerprint: fingerprint(value),
      version: String(n),
      issuedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + TTL_S * 1000).toISOString(),
      ttlSeconds: TTL_S,
    };
  }
  async release(): Promise<void> {}
}

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

describe("a route's scrubber follows its values when their number stays the same", () => {
  it('two values expired and two new ones held since the last request: the new ones are scrubbed, also the one the request did not carry', async () => {
    const clock = new ManualClock();
    const authority = new Authority();
    const lease = new LeaseCredential('openai', authority, clock, () => undefined);
    const config = parseConfig(
      sidecarSchema,
      JSON.stringify({
        listen: '127.0.0.1:0',
        routes: { r: { upstream: 'https://api.example.com', credential: { env: 'UNUSED' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      }),
      { UNUSED: 'x' },
    );
    const route = new RouteRuntime('r', config.routes.r!, lease, undefined);
    closers.push(() => route.close(), () => lease.close());

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
