import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/authority/leases/memory.js';
import { MemoryRevocationBus } from '../../src/bus/memory.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { leasedRoute, leasedSidecar } from '../helpers/leased-sidecar.js';
import { stopAfterEach } from '../helpers/teardown.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A revocation that lands while a lease call is under way (DESIGN §7): whatever that call
 * brings back may predate the revocation, so it is released at the authority and never
 * injected; a fresh lease is taken instead. The authority is made slow by a store whose
 * putLease waits on a gate the test opens.
 */
class GatedStore extends MemoryStore {
  gate: Promise<void> | undefined;
  /** Leases whose putLease waited on the gate. */
  readonly gated: string[] = [];
  readonly deleted: string[] = [];
  private entered: (() => void) | undefined;
  whenEntered = new Promise<void>((r) => (this.entered = r));
  override async putLease(record: LeaseRecord): Promise<void> {
    if (this.gate) {
      this.gated.push(record.id);
      this.entered?.();
      await this.gate;
    }
    await super.putLease(record);
  }
  override async deleteLease(id: string): Promise<boolean> {
    this.deleted.push(id);
    return super.deleteLease(id);
  }
}

const started = stopAfterEach();
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Sidecar | undefined;

async function until<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, ms = 3_000): Promise<T> {
  let v!: T;
  await waitFor(async () => ok((v = await fn())), { timeoutMs: ms, intervalMs: 10, message: () => `condition (last: ${JSON.stringify(v)})` });
  return v;
}

describe('revoked while the lease call is in flight', () => {
  it('the lease that call returns is released and never injected; a fresh one is used', async () => {
    const store = new GatedStore();
    authority = await startAuthority(
      {
        credentials: { search: { kind: 'jwt', audience: 'search-api', ttl: '5m' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['search'] }],
      },
      { store },
    );
    started(authority, (a) => a!.stop());
    const seen: string[] = [];
    upstream = await startUpstream((req, res) => {
      seen.push(String(decodeJwt(String(req.headers.authorization).slice(7)).jti));
      res.end('ok');
    });
    started(upstream, (u) => u!.close());
    const bus = new MemoryRevocationBus();
    ({ sidecar } = await leasedSidecar(authority, { search: leasedRoute(upstream.url, 'search') }, { bus, level: 'debug', extra: { shutdown: { grace: '2s' } } }));
    started(sidecar, (x) => x!.stop());
    const addrs = await sidecar.start();
    const proxyUrl = `http://127.0.0.1:${addrs.proxy.port}/search/x`;
    const leaseOf = async () =>
      ((await (await fetch(`http://127.0.0.1:${addrs.admin.port}/status`)).json()) as { routes: { search: { lease: string | null } } }).routes.search.lease;

    const l1 = await until(leaseOf, (l) => l !== null);
    expect((await fetch(proxyUrl)).status).toBe(200);

    // Slow authority from now on; revoke L1: the sidecar drops it and leases anew (call held).
    let open!: () => void;
    store.gate = new Promise<void>((r) => (open = r));
    await bus.publish({ scope: 'lease', target: l1!, reason: 'first', by: 'test' });
    await store.whenEntered;
    const inFlight = store.gated[0]!;
    // While that call is under way, the whole credential is revoked: the lease it will
    // bring back was issued before this revocation.
    await bus.publish({ scope: 'credential', target: 'search', reason: 'second', by: 'test' });
    store.gate = undefined;
    open();

    const l3 = await until(leaseOf, (l) => l !== null && l !== l1 && l !== inFlight);
    expect(l3).not.toBe(inFlight);
    await until(() => store.deleted, (d) => d.includes(inFlight));
    // Requests from now on carry the fresh lease; the in-flight one was never sent.
    for (let i = 0; i < 3; i++) expect((await fetch(proxyUrl)).status).toBe(200);
    expect(seen).not.toContain(inFlight);
    expect(seen.at(-1)).toBe(l3);
    expect(await leaseOf()).toBe(l3);
  });
});
