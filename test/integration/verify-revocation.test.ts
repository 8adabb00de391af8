import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisRevocationPublisher } from '../../src/bus/redis.js';
import type { RevocationScope } from '../../src/core/protocol.js';
import { createVerifier, type Verifier, type VerifierOptions } from '../../src/verify/index.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { codeOf, id, ISS, jwksUrl, ShiftClock, signAsAuthority, startKeyedAuthority, WarnLog, within, type KeyedAuthority } from '../helpers/verify-util.js';
import { sleep } from '../helpers/wait.js';

/**
 * leash/verify's deny-set fed by the real Redis revocation bus (stream + pub/sub), with
 * tokens from a real HTTPS authority. Each test has its own key prefix: the stream is
 * history, and a new verifier reads it.
 */
let redis: TestRedis;
let authority: KeyedAuthority;
const clock = new ShiftClock();
const verifiers: Verifier[] = [];
const clients: Redis[] = [];
let n = 0;
let prefix = '';

beforeAll(async () => {
  redis = await startRedis();
  authority = await startKeyedAuthority({ clock });
});
afterAll(async () => {
  await authority?.stop();
  await redis?.stop();
});
afterEach(async () => {
  await Promise.all(verifiers.splice(0).map((v) => v.close()));
  for (const c of clients.splice(0)) c.disconnect();
});

function client(): Redis {
  const c = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

function nextPrefix(): string {
  prefix = `t${++n}:`;
  return prefix;
}

function publisher(): RedisRevocationPublisher {
  return new RedisRevocationPublisher(client(), 3_600_000, { prefix, clock: () => clock.wallMs() });
}

async function verifier(over: Partial<VerifierOptions> = {}): Promise<Verifier> {
  const v = createVerifier({
    jwksUrl: jwksUrl(authority),
    ca: authority.caPem,
    issuer: ISS,
    audience: ['search-api', 'other-api'],
    clock,
    revocations: { redis: redis.url, prefix },
    ...over,
  });
  verifiers.push(v);
  await v.ready();
  expect(v.channelUp).toBe(true);
  return v;
}

const passes = async (vs: Verifier[], token: string) => (await Promise.all(vs.map((v) => codeOf(v.verify(token))))).every((c) => c === 'passed');
const revoked = async (vs: Verifier[], token: string) => (await Promise.all(vs.map((v) => codeOf(v.verify(token))))).every((c) => c === 'LEASH_VERIFY_REVOKED');

/** Move the authority's (and verifiers') clock past the revocation's second: later tokens have a later iat. */
const later = () => (clock.offsetMs += 2_000);

describe('leash/verify: revocations over Redis', () => {
  const cases: { scope: RevocationScope; target: (t: Record<string, { token: string; lease: string }>) => string; hit: string[]; spared: string[] }[] = [
    { scope: 'lease', target: (t) => t.a1!.lease, hit: ['a1'], spared: ['a2', 'b', 'o'] },
    { scope: 'instance', target: () => id('agent-1'), hit: ['a1', 'a2'], spared: ['b', 'o'] },
    { scope: 'credential', target: () => 'search', hit: ['a1', 'a2', 'b'], spared: ['o'] },
    { scope: 'all', target: () => '*', hit: ['a1', 'a2', 'b', 'o'], spared: [] },
  ];

  for (const c of cases) {
    it(`a ${c.scope} revocation reaches two verifiers within 1 s; tokens it does not cover still pass`, async () => {
      nextPrefix();
      const vs = [await verifier(), await verifier()];
      const tokens = {
        a1: await authority.lease('agent-1'),
        a2: await authority.lease('agent-1'),
        b: await authority.lease('agent-2'),
        o: await authority.lease('agent-2', 'other'),
      };
      for (const t of Object.values(tokens)) expect(await passes(vs, t.token)).toBe(true);
      await publisher().publish({ scope: c.scope, target: c.target(tokens), reason: 'test', by: 'test' });
      const ms = await within(async () => {
        for (const k of c.hit) if (!(await revoked(vs, tokens[k as keyof typeof tokens].token))) return false;
        return true;
      });
      expect(ms).toBeLessThan(1000);
      for (const k of c.spared) expect(await passes(vs, tokens[k as keyof typeof tokens].token), k).toBe(true);
      const err: unknown = await vs[0]!.verify(tokens[c.hit[0] as keyof typeof tokens].token).catch((e: unknown) => e);
      expect((err as { context: Record<string, unknown> }).context.scope).toBe(c.scope);
      if (c.scope !== 'lease') {
        // Leases issued after the revocation (the sidecar's re-lease) pass.
        later();
        const fresh = [await authority.lease('agent-1'), await authority.lease('agent-2')];
        for (const t of fresh) expect(await passes(vs, t.token)).toBe(true);
      }
    });
  }

  it('a verifier started after a revocation still applies it (reads the stream once at start)', async () => {
    nextPrefix();
    const a = await authority.lease('agent-1');
    const b = await authority.lease('agent-1');
    const o = await authority.lease('agent-2', 'other');
    await sleep(5); // o is issued strictly before the revocations
    const pub = publisher();
    await pub.publish({ scope: 'lease', target: a.lease, reason: 'leaked', by: 'test' });
    await pub.publish({ scope: 'credential', target: 'other', reason: 'rotated upstream', by: 'test' });
    // (Tokens issued in the same second as a revocation: see the leash_iat_ms test below.)
    const v = await verifier();
    expect(await codeOf(v.verify(a.token))).toBe('LEASH_VERIFY_REVOKED');
    expect(await codeOf(v.verify(o.token))).toBe('LEASH_VERIFY_REVOKED');
    expect((await v.verify(b.token)).jti).toBe(b.lease);
    later();
    expect((await v.verify((await authority.lease('agent-2', 'other')).token)).credential).toBe('other');
  });

  it('malformed messages and stream entries are skipped, logged, and do not stop later revocations', async () => {
    nextPrefix();
    const raw = client();
    const key = `${prefix}revocations`;
    await raw.xadd(key, '*', 'scope', 'Bogus!', 'target', 'x', 'at', new Date().toISOString());
    const warn = new WarnLog();
    const v = await verifier({ logger: warn });
    expect(warn.has(/malformed/)).toBe(true);
    const a = await authority.lease('agent-1');
    for (const m of ['not json', '42', '{"id":"x"}', JSON.stringify({ id: '1-0', scope: 'Everything', target: '*', at: new Date().toISOString() }), JSON.stringify({ id: '1-1', scope: 'lease', target: '', at: 'x' })]) {
      await raw.publish(key, m);
    }
    await within(() => warn.entries.filter((e) => /malformed/.test(e.msg)).length >= 6);
    expect(v.channelUp).toBe(true);
    expect((await v.verify(a.token)).jti).toBe(a.lease);
    await publisher().publish({ scope: 'lease', target: a.lease, reason: 'test', by: 'test' });
    await within(async () => (await codeOf(v.verify(a.token))) === 'LEASH_VERIFY_REVOKED');
  });

  it('Redis down: channelUp false, tokens still verify (or are refused with requireRevocationChannel); a lost stream fails closed', async () => {
    nextPrefix();
    const warn = new WarnLog();
    const v = await verifier({ logger: warn });
    const strict = await verifier({ requireRevocationChannel: true });
    const pub = publisher();
    const x = await authority.lease('agent-9');
    await pub.publish({ scope: 'lease', target: x.lease, reason: 'test', by: 'test' });
    await within(async () => (await codeOf(v.verify(x.token))) === 'LEASH_VERIFY_REVOKED');
    const a = await authority.lease('agent-1');
    await redis.kill();
    await within(() => !v.channelUp && !strict.channelUp, 5_000);
    expect(warn.has(/channel down/)).toBe(true);
    expect((await v.verify(a.token)).sub).toBe(id('agent-1'));
    expect(await codeOf(strict.verify(a.token))).toBe('LEASH_VERIFY_UNAVAILABLE');
    expect(await codeOf(v.verify(x.token))).toBe('LEASH_VERIFY_REVOKED'); // the deny-set survives

    // Redis comes back empty (no persistence): the stream we had read is gone, revocations
    // may have been lost → every token issued up to now is refused; later ones pass.
    await redis.restart();
    await within(() => v.channelUp && strict.channelUp, 5_000);
    expect(warn.has(/may have been lost/)).toBe(true);
    expect(await codeOf(v.verify(a.token))).toBe('LEASH_VERIFY_REVOKED');
    expect(await codeOf(strict.verify(a.token))).toBe('LEASH_VERIFY_REVOKED');
    later();
    const b = await authority.lease('agent-1');
    expect((await v.verify(b.token)).sub).toBe(id('agent-1'));
    expect((await strict.verify(b.token)).sub).toBe(id('agent-1'));
  });

  it("onGap 'warn' keeps accepting tokens after a lost stream", async () => {
    nextPrefix();
    const warn = new WarnLog();
    const v = await verifier({ logger: warn, onGap: 'warn' });
    await publisher().publish({ scope: 'lease', target: 'nothing', reason: 'test', by: 'test' });
    await within(async () => (await client().xlen(`${prefix}revocations`)) === 1);
    await sleep(100);
    const a = await authority.lease('agent-1');
    await redis.restart();
    await within(() => warn.has(/may have been lost/), 5_000);
    await within(() => v.channelUp, 5_000);
    expect((await v.verify(a.token)).sub).toBe(id('agent-1'));
  });

  it('same-second tokens: iat alone fails closed; leash_iat_ms (when the authority signs it) decides to the millisecond', async () => {
    nextPrefix();
    const v = await verifier();
    const atMs = Math.floor(clock.wallMs() / 1000) * 1000 + 500;
    const pub = new RedisRevocationPublisher(client(), 3_600_000, { prefix, clock: () => atMs });
    await pub.publish({ scope: 'credential', target: 'search', reason: 'test', by: 'test' });
    const iat = Math.floor(atMs / 1000);
    const base = { iss: ISS, sub: id('agent-1'), aud: 'search-api', scope: 'search:read', iat, nbf: iat, exp: iat + 300, leash_cred: 'search' };
    const token = (extra: Record<string, unknown>, jti: string) => signAsAuthority(authority, { ...base, jti, ...extra });
    await within(async () => (await codeOf(v.verify(await token({}, 'plain')))) === 'LEASH_VERIFY_REVOKED');
    expect((await v.verify(await token({ leash_iat_ms: atMs + 100 }, 'after'))).jti).toBe('after');
    expect(await codeOf(v.verify(await token({ leash_iat_ms: atMs - 100 }, 'before')))).toBe('LEASH_VERIFY_REVOKED');
    expect(await codeOf(v.verify(await token({ leash_iat_ms: atMs }, 'same-ms')))).toBe('LEASH_VERIFY_REVOKED');
    // Inconsistent with iat (another second): ignored, iat decides (fail closed).
    expect(await codeOf(v.verify(await token({ leash_iat_ms: atMs + 5_000 }, 'liar')))).toBe('LEASH_VERIFY_REVOKED');
  });
});
