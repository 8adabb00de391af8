import { writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { documentedSidecarAclWith } from '../helpers/redis-acl.js';
import { agentLoop, AuthorityProc, nextEvent, startSidecarProc, killAll } from '../helpers/rotate-fleet.js';
import type { Proc } from '../helpers/fleet-procs.js';
import { writeTemp } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The Redis passwords rotated while an authority and a sidecar run, each with its own ACL
 * user (the sidecar's exactly as docs/revocation.md gives it) and its password in a file
 * (a mounted Secret). The rotation as Redis allows it: each user gets the new password
 * beside the old one, the files are updated, the old password is removed; then every
 * connection is dropped (what a failover, a Redis restart or a network blip does).
 * Before: both processes read the password once at start and reconnected with the removed
 * one forever (WRONGPASS): the authority's store was gone (leases 503, the agent's
 * credential ran out) and the sidecar's revocation channel stayed down. Now a `{ file }`
 * password is read again at every reconnection.
 */
const SECRET = 'rotate-redis-upstream-secret-9e2b';

let redis: TestRedis | undefined;
let admin: Redis | undefined;
let upstream: Upstream | undefined;
let authority: AuthorityProc | undefined;
let sidecar: Proc | undefined;

afterAll(async () => {
  await killAll([...(authority?.all ?? []), ...(sidecar ? [sidecar] : [])]);
  admin?.disconnect();
  await upstream?.close();
  await redis?.stop();
});

describe('rotating the Redis passwords of the authority and the sidecars', () => {
  it('both reconnect with the new password from their files; nothing fails, revocations still arrive', { timeout: 40_000 }, async () => {
    redis = await startRedis();
    admin = new Redis(redis.url);
    await admin.call('ACL', 'SETUSER', 'leash-authority', 'on', '>authority-pw-1', '~*', '&*', '+@all');
    await admin.call('ACL', 'SETUSER', 'leash-sidecar', ...documentedSidecarAclWith('sidecar-pw-1'));
    const authorityPw = writeTemp('authority-redis-password', 'authority-pw-1\n');
    const sidecarPw = writeTemp('sidecar-redis-password', 'sidecar-pw-1\n');
    upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      res.writeHead(req.headers.authorization === `Bearer ${SECRET}` ? 200 : 401).end('ok');
    });
    const ca = CertificateAuthority.generate('leash.local');
    const caFile = writeTemp('ca.pem', ca.caPem);
    authority = new AuthorityProc({ LLM_KEY: SECRET });
    await authority.start({
      hostnames: ['127.0.0.1'],
      ca: { certFile: caFile, keyFile: writeTemp('ca-key.pem', ca.exportPrivateKeyPem()) },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      redis: { url: `redis://leash-authority@127.0.0.1:${redis.port}`, password: { file: authorityPw } },
      credentials: { llm: { kind: 'static', source: { env: 'LLM_KEY' }, ttl: '6s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['llm'], maxTtl: '6s' }],
    });
    const token = authority.cli(['token', 'create', '--identity', 'agent-1'], caFile);
    const sc = await startSidecarProc(
      {
        authority: { url: authority.url, caFile, bootstrap: { joinToken: { env: 'JT' } } },
        revocations: { redis: { url: `redis://leash-sidecar@127.0.0.1:${redis.port}`, password: { file: sidecarPw } } },
        rotation: { backoff: { base: '100ms', cap: '400ms' } },
        routes: { llm: { upstream: upstream.url, credential: 'llm', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      },
      { JT: token },
    );
    sidecar = sc.proc;
    const agent = agentLoop(`${sc.url}/llm/v1/x`);
    await nextEvent(sidecar, 'credential.rotated');

    // The rotation: new password beside the old, files updated, old password removed.
    await admin.call('ACL', 'SETUSER', 'leash-authority', '>authority-pw-2');
    await admin.call('ACL', 'SETUSER', 'leash-sidecar', '>sidecar-pw-2');
    writeFileSync(authorityPw, 'authority-pw-2\n');
    writeFileSync(sidecarPw, 'sidecar-pw-2\n');
    await admin.call('ACL', 'SETUSER', 'leash-authority', '<authority-pw-1');
    await admin.call('ACL', 'SETUSER', 'leash-sidecar', '<sidecar-pw-1');
    // Every connection of both users dropped, as a failover does.
    await admin.call('CLIENT', 'KILL', 'USER', 'leash-authority');
    await admin.call('CLIENT', 'KILL', 'USER', 'leash-sidecar');
    await nextEvent(sidecar, 'credential.rotated');
    await nextEvent(sidecar, 'credential.rotated');
    const { sent, failures } = await agent.stop();
    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(20);

    // Both are connected again, as the new password's users, and a revocation arrives.
    const clients = String(await admin.call('CLIENT', 'LIST'));
    expect(clients).toMatch(/user=leash-authority/);
    expect(clients).toMatch(/user=leash-sidecar/);
    authority.cli(['revoke', '--credential', 'llm', '--reason', 'after the password rotation'], caFile);
    await sidecar.waitForJson((l) => l.event === 'credential.revoked', 5_000);

    // Between the removal of the old password and the file's update the sidecar cannot
    // connect: a revocation published then is applied once it can (the stream's catch-up).
    const channelUp = async () => (await (await fetch(`${sc.adminUrl}/metrics`)).text()).match(/^leash_revocation_channel_up (\d)/m)?.[1];
    await admin.call('ACL', 'SETUSER', 'leash-sidecar', '>sidecar-pw-3', '<sidecar-pw-2');
    await admin.call('CLIENT', 'KILL', 'USER', 'leash-sidecar');
    await waitFor(async () => (await channelUp()) === '0', { timeoutMs: 5_000, message: 'the channel down' });
    const revokedBefore = sidecar.stdout.filter((l) => l.includes('"event":"credential.revoked"')).length;
    authority.cli(['revoke', '--credential', 'llm', '--reason', 'while the sidecar was locked out'], caFile);
    writeFileSync(sidecarPw, 'sidecar-pw-3\n');
    await waitFor(() => sidecar!.stdout.filter((l) => l.includes('"event":"credential.revoked"')).length > revokedBefore, { timeoutMs: 8_000, message: 'the revocation caught up' });
    expect(await channelUp()).toBe('1');
    const logs = [...authority.all, sidecar].flatMap((p) => [...p.stdout, ...p.stderr]).join('\n');
    for (const pw of ['authority-pw-1', 'authority-pw-2', 'sidecar-pw-1', 'sidecar-pw-2', 'sidecar-pw-3', SECRET]) expect(logs).not.toContain(pw);
  });
});
