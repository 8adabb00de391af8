import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { CertificateAuthority } from '../../src/pki/ca.js';
import { systemClock, type Clock } from '../../src/core/clock.js';
import type { NodeAttestor } from '../../src/core/attestation.js';
import { AuthorityClient } from '../../src/sidecar/credentials/authority-client.js';
import { IdentityManager, type IdentityEvent } from '../../src/sidecar/credentials/identity.js';
import { joinTokenAttestor } from '../../src/sidecar/credentials/attestors/join-token.js';
import { MAX_TIMER_MS } from '../../src/sidecar/credentials/rotation.js';
import { sendJson, startAuthorityStandIn } from '../helpers/authority-stand-in.js';
import type { Upstream } from '../helpers/harness.js';

/**
 * The identity manager's life: what it names a re-attestation, when its timers call the
 * authority (never after close or revoke; a refresh further off than setTimeout can wait
 * is waited for in steps, not called at once) and what revoke reports.
 */

const HOUR = 3_600_000;
const ID = 'spiffe://leash.local/join/a';
const OTHER = 'spiffe://leash.local/join/b';

let ca: CertificateAuthority;
let server: Upstream;
/** Each call's path, in order. */
let calls: string[] = [];
/** What the next answers carry: identity, TTL in seconds, and how long to wait before answering. */
let identityOf: (n: number) => string = () => ID;
let ttlOf: (n: number) => number = () => 3600;
let delayMs = 0;
let client: AuthorityClient;
let manager: IdentityManager;

beforeAll(async () => {
  ({ ca, server } = await startAuthorityStandIn((req, res, body) => {
    const n = calls.push(req.url ?? '') - 1;
    const { csr } = JSON.parse(body) as { csr: string };
    const identity = identityOf(n);
    const text = JSON.stringify({ identity, certificate: ca.signCsr(csr, identity, HOUR).certificate, ttlSeconds: ttlOf(n) });
    if (delayMs > 0) setTimeout(() => sendJson(res, 200, text), delayMs);
    else sendJson(res, 200, text);
  }));
});
afterAll(async () => {
  await server?.close();
});
afterEach(async () => {
  vi.useRealTimers();
  await manager?.close();
  client?.close();
  calls = [];
  identityOf = () => ID;
  ttlOf = () => 3600;
  delayMs = 0;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits on the wall clock without setTimeout (faked in one test). */
async function wallWait(ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) await new Promise((r) => setImmediate(r));
}
const joinToken = () => joinTokenAttestor(() => 'leash_jt_x');
/** Re-attests (bootstraps again) to refresh, as the Kubernetes attestor does. */
const reattesting = (): NodeAttestor => {
  const inner = joinToken();
  return { ...inner, reattest: true, evidence: () => inner.evidence() };
};

function start(attestor: NodeAttestor, clock: Clock = systemClock): IdentityEvent[] {
  const events: IdentityEvent[] = [];
  client = new AuthorityClient(new URL(server.url), ca.caPem, 1_000);
  // random 0.5: the refresh lands at exactly half the TTL.
  manager = new IdentityManager(client, attestor, clock, (e) => events.push(e), undefined, () => 0.5);
  return events;
}

describe('a re-attestation', () => {
  it('under the same identity is a renewal; under another, a bootstrap', async () => {
    identityOf = (n) => (n === 2 ? OTHER : ID);
    const events = start(reattesting());
    await manager.start();
    await manager.start();
    await manager.start();
    expect(calls).toEqual(['/v1/bootstrap', '/v1/bootstrap', '/v1/bootstrap']);
    expect(events).toEqual([
      { kind: 'bootstrapped', identity: ID },
      { kind: 'renewed', identity: ID },
      { kind: 'bootstrapped', identity: OTHER },
    ]);
  });

  it('after the held identity expired, the same identity again is a bootstrap', async () => {
    let now = 0;
    const events = start(reattesting(), { monotonicMs: () => now, wallMs: () => Date.now() });
    await manager.start();
    now += 2 * HOUR; // the first identity (one hour) is past
    expect(manager.usable()).toBe(false);
    await manager.start();
    expect(events).toEqual([
      { kind: 'bootstrapped', identity: ID },
      { kind: 'bootstrapped', identity: ID },
    ]);
  });
});

describe('timers', () => {
  it('refreshes at half the TTL by itself', async () => {
    ttlOf = () => 1; // refresh after 500 ms
    start(joinToken());
    await manager.start();
    const started = Date.now();
    for (let i = 0; i < 250 && calls.length < 2; i++) await sleep(20); // up to 5 s under load
    expect(calls).toEqual(['/v1/bootstrap', '/v1/identity/renew']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400); // not at once: at half of the 1 s TTL
  });

  it('a second start replaces the pending refresh; the first never fires', async () => {
    ttlOf = (n) => (n === 0 ? 1 : 3600); // first refresh due at 500 ms, the second in half an hour
    start(joinToken());
    await manager.start();
    await manager.start(); // renews now: the next refresh is half an hour away
    await sleep(900);
    expect(calls).toEqual(['/v1/bootstrap', '/v1/identity/renew']);
  });

  it('calls nothing after close, even for an attempt that was in flight', async () => {
    ttlOf = () => 1;
    delayMs = 200;
    start(joinToken());
    const first = manager.start();
    await sleep(50);
    await manager.close(); // waits for the call in flight
    await first;
    expect(manager.identity).toBe(ID);
    await manager.start();
    await sleep(900); // past the refresh the answer asked for
    expect(calls).toEqual(['/v1/bootstrap']);
  });

  it('waits in steps for a refresh further off than setTimeout can wait', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let now = 0;
    const days = 100; // refresh at 50 days: past MAX_TIMER_MS (~24.8 days)
    ttlOf = () => days * 86_400;
    start(joinToken(), { monotonicMs: () => now, wallMs: () => Date.now() });
    await manager.start();
    expect(calls).toEqual(['/v1/bootstrap']);
    const refreshAt = (days / 2) * 86_400_000;
    for (const step of [MAX_TIMER_MS, MAX_TIMER_MS]) {
      now += step;
      vi.advanceTimersByTime(step);
      await wallWait(300); // time for a call, had one been made
      expect(calls).toEqual(['/v1/bootstrap']); // not due yet: only the next step is armed
    }
    const rest = refreshAt - now;
    expect(rest).toBeGreaterThan(0);
    now = refreshAt;
    vi.advanceTimersByTime(rest);
    vi.useRealTimers();
    for (let i = 0; i < 100 && calls.length < 2; i++) await sleep(20);
    expect(calls).toEqual(['/v1/bootstrap', '/v1/identity/renew']);
  });
});

describe('revoke', () => {
  it('reports the held identity lost with the reason, and calls nothing more', async () => {
    ttlOf = () => 1;
    const events = start(joinToken());
    await manager.start();
    manager.revoke('revoked by operator');
    expect(manager.identity).toBeUndefined();
    expect(events.at(-1)).toEqual({ kind: 'lost', identity: ID, reason: 'revoked by operator' });
    await manager.start();
    await sleep(900);
    expect(calls).toEqual(['/v1/bootstrap']);
  });

  it('with no identity held reports nothing and does not throw', async () => {
    const events = start(joinToken());
    expect(() => manager.revoke('revoked by operator')).not.toThrow();
    expect(events).toEqual([]);
    await manager.start();
    expect(calls).toEqual([]);
  });
});
