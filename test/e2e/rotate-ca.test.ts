import { writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { agentLoop, AuthorityProc, nextEvent, startSidecarProc, killAll } from '../helpers/rotate-fleet.js';
import type { Proc } from '../helpers/fleet-procs.js';
import { writeTemp } from '../helpers/spawn.js';

/**
 * A year in production: the identity CA is replaced while the fleet runs, with real
 * processes (a `leash authority` restarted on the same port, as a rolling update does, and
 * a `leash sidecar` that is never restarted) and an agent sending a request every 50 ms
 * throughout. Both CAs have the same subject name, as two runs of the documented openssl
 * command make. The procedure (docs/operations.md, "Rotating leash's own keys"):
 *   1. the sidecars' authority.caFile becomes a bundle of the old and the new CA;
 *   2. every replica trusts the new CA for client certificates (ca.trustedCertFiles);
 *   3. every replica signs with the new CA and trusts the old one;
 *   4. after one identity.ttl, the old CA is dropped.
 * Before: ca.trustedCertFiles did not exist (the authority refused its config: no overlap
 * was possible, every sidecar's certificate was refused at the switch) and the sidecar read
 * authority.caFile at start only (rotate-tls.test.ts).
 */
const SECRET = 'rotate-ca-upstream-secret-4f1c0d';

let redis: TestRedis | undefined;
let upstream: Upstream | undefined;
let authority: AuthorityProc | undefined;
let sidecar: Proc | undefined;

afterAll(async () => {
  await killAll([...(authority?.all ?? []), ...(sidecar ? [sidecar] : [])]);
  await upstream?.close();
  await redis?.stop();
});

describe('rotating the identity CA with an overlap', () => {
  it('moves authority and a running sidecar to a new CA with no failed agent request', { timeout: 40_000 }, async () => {
    redis = await startRedis();
    const received: string[] = [];
    upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
      received.push(req.headers.authorization ?? '');
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
    const ca1 = CertificateAuthority.generate('leash.local');
    const ca2 = CertificateAuthority.generate('leash.local');
    expect(ca2.certificate.subject).toBe(ca1.certificate.subject);
    const ca1File = writeTemp('ca1.pem', ca1.caPem);
    const ca1Key = writeTemp('ca1-key.pem', ca1.exportPrivateKeyPem());
    const ca2File = writeTemp('ca2.pem', ca2.caPem);
    const ca2Key = writeTemp('ca2-key.pem', ca2.exportPrivateKeyPem());
    const sidecarCa = writeTemp('authority-ca.pem', ca1.caPem); // the sidecars' ConfigMap
    const both = ca1.caPem + ca2.caPem;
    const config = (certFile: string, keyFile: string, trustedCertFiles: string[]) => ({
      hostnames: ['127.0.0.1'],
      ca: { certFile, keyFile, ...(trustedCertFiles.length ? { trustedCertFiles } : {}) },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      redis: redis!.url,
      // Short lifetimes, so that the rotation's steps happen within seconds; long enough that
      // a replica's restart on a loaded machine (a second or two) never outlasts half of one.
      identity: { ttl: '6s' },
      credentials: { llm: { kind: 'static', source: { env: 'LLM_KEY' }, ttl: '6s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['llm'], maxTtl: '6s' }],
    });

    authority = new AuthorityProc({ LLM_KEY: SECRET });
    await authority.start(config(ca1File, ca1Key, []));
    const token = authority.cli(['token', 'create', '--identity', 'agent-1'], ca1File);
    const sc = await startSidecarProc(
      {
        authority: { url: authority.url, caFile: sidecarCa, bootstrap: { joinToken: { env: 'JT' } } },
        rotation: { backoff: { base: '100ms', cap: '400ms' } },
        routes: { llm: { upstream: upstream.url, credential: 'llm', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      },
      { JT: token },
    );
    sidecar = sc.proc;
    const agent = agentLoop(`${sc.url}/llm/v1/x`);

    // 1. The sidecars' CA bundle gains the new CA; the sidecar takes it at its next call.
    writeFileSync(sidecarCa, both);
    // 2. The replicas trust the new CA too (still signing with the old one).
    await authority.restart(config(ca1File, ca1Key, [ca2File]));
    await nextEvent(sidecar, 'instance.renewed');
    // 3. The replicas sign with the new CA and accept the old one's certificates meanwhile.
    await authority.restart(config(ca2File, ca2Key, [ca1File]));
    await nextEvent(sidecar, 'instance.renewed'); // presented an old-CA certificate, got a new-CA one
    expect(await authority.metric('leash_authority_client_certificates_total{ca="trusted"}', both)).toBeGreaterThan(0);
    await nextEvent(sidecar, 'instance.renewed'); // now with the new-CA certificate
    expect(await authority.metric('leash_authority_client_certificates_total{ca="signing"}', both)).toBeGreaterThan(0);
    // 4. The old CA is gone from the replicas; the sidecar keeps renewing and leasing.
    await authority.restart(config(ca2File, ca2Key, []));
    await Promise.all([nextEvent(sidecar, 'instance.renewed'), nextEvent(sidecar, 'credential.rotated')]);
    const { sent, failures } = await agent.stop();

    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(50);
    expect(new Set(received)).toEqual(new Set([`Bearer ${SECRET}`]));
    expect(sidecar.stdout.some((l) => l.includes('authority.caFile changed: the authority is now verified against the new bundle'))).toBe(true);
    // Nothing of the CA keys or the secret in any log line.
    const logs = [...authority.all, sidecar].flatMap((p) => [...p.stdout, ...p.stderr]).join('\n');
    expect(logs).not.toContain(SECRET);
    expect(logs).not.toContain('PRIVATE KEY');
  });
});
