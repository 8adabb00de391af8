import { writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { agentLoop, AuthorityProc, nextEvent, startSidecarProc, killAll } from '../helpers/rotate-fleet.js';
import type { Proc } from '../helpers/fleet-procs.js';
import { writeTemp } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The authority's own TLS certificate (`tls.certFile`, e.g. from cert-manager) and the CA
 * the sidecars verify it with (`authority.caFile`, a ConfigMap), rotated while a sidecar
 * runs and its agent sends a request every 50 ms:
 *   1. the sidecars' bundle gains the new TLS CA (taken at the sidecar's next call);
 *   2. a replica restarts with a certificate from the new TLS CA;
 *   3. cert-manager renews the certificate in place: the running replica serves it within
 *      5 s, without a restart;
 *   4. the old TLS CA leaves the sidecars' bundle.
 * Before: the sidecar read authority.caFile at start only (step 2 cut it off from the
 * authority: its lease ran out and the agent got 503s), and the authority read tls.certFile
 * at start only (step 3: the renewed certificate was never served; a replica nobody
 * restarted served the old one until it expired, and then no sidecar could reach it).
 */
const SECRET = 'rotate-tls-upstream-secret-77ab01';

let redis: TestRedis | undefined;
let upstream: Upstream | undefined;
let authority: AuthorityProc | undefined;
let sidecar: Proc | undefined;

afterAll(async () => {
  await killAll([...(authority?.all ?? []), ...(sidecar ? [sidecar] : [])]);
  await upstream?.close();
  await redis?.stop();
});

describe("rotating the authority's TLS certificate and the sidecars' authority.caFile", () => {
  it('keeps every agent request served; a renewed tls.certFile is served without a restart', { timeout: 40_000 }, async () => {
    redis = await startRedis();
    upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      res.writeHead(req.headers.authorization === `Bearer ${SECRET}` ? 200 : 401, { 'content-type': 'text/plain' }).end('ok');
    });
    const ca = CertificateAuthority.generate('leash.local');
    const tls1 = CertificateAuthority.generate('leash.local', { commonName: 'TLS CA 1' });
    const tls2 = CertificateAuthority.generate('leash.local', { commonName: 'TLS CA 2' });
    const serverCert = (issuer: CertificateAuthority) => issuer.serverCertificate([], ['127.0.0.1'], 86_400_000);
    const first = serverCert(tls1);
    const tlsCert = writeTemp('tls.crt', first.certPem);
    const tlsKey = writeTemp('tls.key', first.keyPem);
    const sidecarCa = writeTemp('authority-ca.pem', tls1.caPem);
    const both = tls1.caPem + tls2.caPem;
    const config = {
      hostnames: ['127.0.0.1'],
      ca: { certFile: writeTemp('ca.pem', ca.caPem), keyFile: writeTemp('ca-key.pem', ca.exportPrivateKeyPem()) },
      tls: { certFile: tlsCert, keyFile: tlsKey },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      redis: redis.url,
      // Short lifetimes, long enough that a restart on a loaded machine never outlasts half of one.
      identity: { ttl: '6s' },
      credentials: { llm: { kind: 'static', source: { env: 'LLM_KEY' }, ttl: '6s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['llm'], maxTtl: '6s' }],
    };
    authority = new AuthorityProc({ LLM_KEY: SECRET });
    await authority.start(config);
    const token = authority.cli(['token', 'create', '--identity', 'agent-1'], sidecarCa);
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

    // 1. The ConfigMap gains the new TLS CA (the sidecar reads it before its next call).
    writeFileSync(sidecarCa, both);
    // 2. A replica restarts with a certificate from the new TLS CA.
    const second = serverCert(tls2);
    writeFileSync(tlsKey, second.keyPem);
    writeFileSync(tlsCert, second.certPem);
    await authority.restart(config);
    await Promise.all([nextEvent(sidecar, 'credential.rotated'), nextEvent(sidecar, 'instance.renewed')]);
    // 3. cert-manager renews it in place; the running replica serves the new one.
    const third = serverCert(tls2);
    writeFileSync(tlsKey, third.keyPem);
    writeFileSync(tlsCert, third.certPem);
    const thirdFingerprint = new X509Certificate(third.certPem).fingerprint256;
    await waitFor(async () => (await authority!.get('/healthz', both)).peerFingerprint === thirdFingerprint, { timeoutMs: 8_000, message: 'the renewed certificate served' });
    await authority.proc!.waitForJson((l) => l.msg === 'authority TLS certificate reloaded', 1_000);
    expect(await authority.metric('leash_authority_certificate_expiry_timestamp_seconds{certificate="tls"}', both)).toBe(new Date(new X509Certificate(third.certPem).validTo).getTime() / 1000);
    await nextEvent(sidecar, 'credential.rotated');
    // 4. The old TLS CA leaves the ConfigMap.
    writeFileSync(sidecarCa, tls2.caPem);
    await Promise.all([nextEvent(sidecar, 'credential.rotated'), nextEvent(sidecar, 'instance.renewed')]);
    const { sent, failures } = await agent.stop();

    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(50);
    expect(sidecar.stdout.filter((l) => l.includes('authority.caFile changed: the authority is now verified against the new bundle'))).toHaveLength(2);
    const logs = [...authority.all, sidecar].flatMap((p) => [...p.stdout, ...p.stderr]).join('\n');
    expect(logs).not.toContain(SECRET);
    expect(logs).not.toContain('PRIVATE KEY');
  });
});
