import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import type { Clock } from '../../src/core/clock.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import type { LeaseResponse } from '../../src/core/protocol.js';
import { LeaseCredential, type LeaseSource } from '../../src/sidecar/credentials/lease-credential.js';
import { RouteRuntime } from '../../src/sidecar/proxy/route.js';

/**
 * A leased route's runtime on its own, clock injected: for the unit tests of the scrubbing
 * window (test/unit/scrub-window*.test.ts).
 */

/** The TTL of every lease MemoryLeaseSource hands out, in seconds. */
export const LEASE_TTL_S = 60;

/** A clock that only moves when a test sets `now`. */
export class ManualClock implements Clock {
  now = 1_000_000;
  monotonicMs(): number {
    return this.now;
  }
  wallMs(): number {
    return this.now;
  }
}

/** The authority's side of leasing, in memory: hands out lease-1, lease-2, … with values value(1), value(2), …, for LEASE_TTL_S seconds. */
export class MemoryLeaseSource implements LeaseSource {
  issued: string[] = [];
  released: string[] = [];
  constructor(private readonly value: (n: number) => string) {}
  async lease(credential: string): Promise<LeaseResponse> {
    const n = this.issued.length + 1;
    const value = this.value(n);
    this.issued.push(value);
    const now = new Date();
    return {
      lease: `lease-${n}`,
      credential,
      value,
      fingerprint: fingerprint(value),
      version: String(n),
      issuedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + LEASE_TTL_S * 1000).toISOString(),
      ttlSeconds: LEASE_TTL_S,
    };
  }
  async release(leaseId: string): Promise<void> {
    this.released.push(leaseId);
  }
}

export interface LeasedRoute {
  clock: ManualClock;
  authority: MemoryLeaseSource;
  lease: LeaseCredential;
  route: RouteRuntime;
}

const open: (() => Promise<void> | void)[] = [];

/** Closes every route and lease leasedRouteRuntime made (for afterEach). */
export async function closeLeasedRoutes(): Promise<void> {
  for (const c of open.splice(0)) await c();
}

/** Route `r` (GET, Bearer injection) whose credential is a lease of `openai` from a MemoryLeaseSource handing out `value(n)`; not started. */
export function leasedRouteRuntime(value: (n: number) => string): LeasedRoute {
  const clock = new ManualClock();
  const authority = new MemoryLeaseSource(value);
  const lease = new LeaseCredential('openai', authority, clock, () => undefined);
  const config = parseConfig(
    sidecarSchema,
    JSON.stringify({
      listen: '127.0.0.1:0',
      // The route's own config names an env source (no authority section needed); the
      // provider it is given is the lease, which is all RouteRuntime reads.
      routes: { r: { upstream: 'https://api.example.com', credential: { env: 'UNUSED' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
    }),
    { UNUSED: 'x' },
  );
  const route = new RouteRuntime('r', config.routes.r!, lease, undefined);
  open.push(() => route.close(), () => lease.close());
  return { clock, authority, lease, route };
}
