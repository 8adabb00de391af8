import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/authority/leases/memory.js';
import type { LeaseRecord } from '../../src/core/protocol.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { LogSink, startUpstream, type Upstream } from '../helpers/harness.js';
import { leasedRoute, leasedSidecar, statusOf } from '../helpers/leased-sidecar.js';
import { stopAfterEach } from '../helpers/teardown.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * Revocations that meet a lease call under way, beyond the epoch check
 * (revoke-inflight.test.ts covers credential, all and instance scopes re-leasing):
 * - `revoke --lease L` for a lease the authority has stored (`leash leases` lists it) whose
 *   answer has not reached the sidecar: the sidecar held no L, applied it as "none", and
 *   injected L when it arrived. Every route now remembers lease ids revoked while not held
 *   and refuses such an answer (released, leased again).
 * - an instance cut off while a lease call is under way: the call's answer is discarded,
 *   and nothing is asked of the authority again (it kept retrying with backoff for ever).
 */
class GatedStore extends MemoryStore {
  /** Set: putLeaseThenCheckRevoked waits on it after storing (`after`) or before (`before`). */
  gate: { at: 'before' | 'after'; open: Promise<void> } | undefined;
  readonly stored: string[] = [];
  entered = false;
  override async putLeaseThenCheckRevoked(record: LeaseRecord): Promise<boolean> {
    const gate = this.gate;
    if (gate?.at === 'before') {
      this.entered = true;
      await gate.open;
    }
    const r = await super.putLeaseThenCheckRevoked(record);
    this.stored.push(record.id);
    if (gate?.at === 'after') await gate.open; // the answer is slow to leave
    return r;
  }
}

const started = stopAfterEach();
let authority: TestAuthority | undefined;
let upstream: Upstream | undefined;
let sidecar: Sidecar | undefined;

async function start(store: GatedStore, seen: string[], logs: LogSink, extra: Record<string, unknown> = {}) {
  authority = await startAuthority(
    { credentials: { api: { kind: 'jwt', audience: 'api', ttl: '5m' } }, policies: [{ identities: ['join:agent-*'], credentials: ['api'] }] },
    { store },
  );
  started(authority, (a) => a!.stop());
  upstream = await startUpstream((req, res) => {
    seen.push(String(decodeJwt(String(req.headers.authorization).slice(7)).jti));
    res.end('ok');
  });
  started(upstream, (u) => u!.close());
  ({ sidecar } = await leasedSidecar(authority, { api: leasedRoute(upstream.url, 'api') }, { extra, logs }));
  started(sidecar, (x) => x!.stop());
}

describe('a revocation meets a lease call under way', () => {
  it('a lease revoked by id while its answer is in transit is never injected: released, and another leased', async () => {
    const store = new GatedStore();
    const seen: string[] = [];
    const logs = new LogSink();
    let open!: () => void;
    store.gate = { at: 'after', open: new Promise<void>((r) => (open = r)) };
    await start(store, seen, logs);
    const started = sidecar!.start();
    await waitFor(() => store.stored.length > 0, { timeoutMs: 5_000, intervalMs: 10, message: 'lease stored' });
    const revoked = store.stored[0]!;
    // The operator revokes it as `leash leases` lists it.
    const result = await authority!.running.authority.revoke('admin', 'lease', revoked, 'seen in a log');
    expect(result.leases).toBe(1);
    await sleep(100);
    store.gate = undefined;
    open();
    const addrs = await started;
    await waitFor(async () => (await fetch(`http://127.0.0.1:${addrs.proxy.port}/api/x`)).status === 200, { timeoutMs: 5_000, intervalMs: 20 });
    expect(seen.length).toBeGreaterThan(0);
    expect(seen).not.toContain(revoked);
    expect((await authority!.running.authority.listLeases({})).map((l) => l.id)).not.toContain(revoked);
  });

  it('an instance cut off while a lease call is under way asks the authority nothing more', async () => {
    const store = new GatedStore();
    const seen: string[] = [];
    const logs = new LogSink();
    await start(store, seen, logs, { rotation: { backoff: { base: '100ms', cap: '400ms' } } });
    const addrs = await sidecar!.start();
    const s0 = await statusOf(addrs.admin.port);
    let open!: () => void;
    store.gate = { at: 'before', open: new Promise<void>((r) => (open = r)) };
    // A lease revocation: the route leases again, and that call is held at the authority...
    await authority!.running.authority.revoke('admin', 'lease', s0.routes.api!.lease!, 'first');
    await waitFor(() => store.entered, { timeoutMs: 3_000, intervalMs: 10, message: 'lease call held' });
    // ...while the instance is cut off.
    await authority!.running.authority.revoke('admin', 'instance', s0.instance.identity, 'pod compromised');
    store.gate = undefined;
    open();
    await sleep(2_000);
    // The call under way may be refused once; with a 400 ms backoff cap, retries would show.
    expect(logs.events('credential.refresh_failed').length).toBeLessThanOrEqual(1);
    expect((await fetch(`http://127.0.0.1:${addrs.proxy.port}/api/x`)).status).toBe(503);
  });
});
