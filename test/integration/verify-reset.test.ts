import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, type Verifier } from '../../src/verify/index.js';
import { publisherFor } from '../helpers/bus-harness.js';
import { startBusProxy, type BusProxy } from '../helpers/bus-proxy.js';
import { startBusRedis, type BusRedis } from '../helpers/bus-redis.js';
import { codeOf, ISS, jwksUrl, ShiftClock, startKeyedAuthority, WarnLog, within, type KeyedAuthority } from '../helpers/verify-util.js';

/**
 * Issue 7, leash/verify: a verifier that started with no revocation in the stream
 * (position 0-0) is cut off while a lease is revoked, and Redis restarts EMPTY (no
 * persistence) before it reconnects. It cannot know what was revoked meanwhile, so it
 * must not keep accepting tokens issued before the reset: the epoch change is a gap, and
 * onGap 'deny' (the default) refuses every token issued up to then. Tokens issued after
 * it pass (the sidecars reconcile on the same signal and lease new ones).
 */
let redis: BusRedis;
let proxy: BusProxy;
let authority: KeyedAuthority;
const clock = new ShiftClock();
let verifier: Verifier | undefined;

beforeAll(async () => {
  redis = await startBusRedis();
  proxy = await startBusProxy(redis.port);
  authority = await startKeyedAuthority({ clock });
});
afterAll(async () => {
  await verifier?.close();
  await authority.stop();
  await proxy.close();
  await redis.stop();
});

describe('leash/verify after Redis restarted empty', () => {
  it('does not accept the jti revoked while it was cut off; tokens issued after the reset pass', async () => {
    const warn = new WarnLog();
    verifier = createVerifier({ jwksUrl: jwksUrl(authority), ca: authority.caPem, issuer: ISS, audience: 'search-api', clock, revocations: { redis: proxy.url }, logger: warn });
    await verifier.ready();
    expect(verifier.channelUp).toBe(true);
    const victim = await authority.lease('agent-1');
    const bystander = await authority.lease('agent-2');
    expect(await codeOf(verifier.verify(victim.token))).toBe('passed');

    proxy.partition();
    const { publisher, client } = publisherFor(redis.url);
    await publisher.publish({ scope: 'lease', target: victim.lease, reason: 'leaked', by: 'test' });
    await redis.restart();
    proxy.cutAll();
    proxy.heal();

    await within(() => warn.has(/channel down/), 5_000);
    await within(() => verifier!.channelUp, 8_000); // the gap is handled before the channel counts as up
    expect(await codeOf(verifier.verify(victim.token))).toBe('LEASH_VERIFY_REVOKED');
    expect(warn.has(/revocation stream was reset/)).toBe(true);
    // Fail closed: it cannot know the bystander's token was not revoked too.
    expect(await codeOf(verifier.verify(bystander.token))).toBe('LEASH_VERIFY_REVOKED');
    clock.offsetMs += 2_000; // past the reset's second (iat has one-second precision)
    const fresh = await authority.lease('agent-1');
    expect(await codeOf(verifier.verify(fresh.token))).toBe('passed');
    client.disconnect();
  });
});
