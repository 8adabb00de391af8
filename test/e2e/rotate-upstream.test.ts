import { writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { agentLoop, AuthorityProc, nextEvent, startSidecarProc, killAll } from '../helpers/rotate-fleet.js';
import type { Proc } from '../helpers/fleet-procs.js';
import { writeTemp } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The upstream's real key rotated under a running fleet, as the vendor allows it (the old
 * and the new key both valid for a while, then the old one revoked): a sidecar's local
 * `{ file }` credential and an authority `static` credential from a `{ file }` are both
 * replaced on disk, and neither process restarts. The sidecar's route uses the new key
 * within its file watch (≤ 2 s); the leased route at its next refresh (≤ half the TTL).
 * Once every request carries the new key the vendor revokes the old one: nothing fails.
 * (Found sound: no fix. An `{ env }` source changes only with a restart: procedure in
 * docs/operations.md.)
 */
const OLD_LOCAL = 'vendor-key-local-old-5a1e';
const NEW_LOCAL = 'vendor-key-local-new-77c0';
const OLD_LEASED = 'vendor-key-leased-old-19f3';
const NEW_LEASED = 'vendor-key-leased-new-c4d2';

let upstream: Upstream | undefined;
let authority: AuthorityProc | undefined;
let sidecar: Proc | undefined;

afterAll(async () => {
  await killAll([...(authority?.all ?? []), ...(sidecar ? [sidecar] : [])]);
  await upstream?.close();
});

describe("rotating an upstream's real key", () => {
  it('file sources on the sidecar and at the authority are taken up without a restart', { timeout: 30_000 }, async () => {
    const valid = new Set([OLD_LOCAL, NEW_LOCAL, OLD_LEASED, NEW_LEASED]); // the vendor's overlap
    const seen: string[] = [];
    upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      const key = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      seen.push(key);
      res.writeHead(valid.has(key) ? 200 : 401).end('ok');
    });
    const ca = CertificateAuthority.generate('leash.local');
    const caFile = writeTemp('ca.pem', ca.caPem);
    const leasedFile = writeTemp('leased-key', `${OLD_LEASED}\n`);
    const localFile = writeTemp('local-key', `${OLD_LOCAL}\n`);
    authority = new AuthorityProc({});
    await authority.start({
      hostnames: ['127.0.0.1'],
      ca: { certFile: caFile, keyFile: writeTemp('ca-key.pem', ca.exportPrivateKeyPem()) },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      credentials: { llm: { kind: 'static', source: { file: leasedFile }, ttl: '3s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['llm'], maxTtl: '3s' }],
    });
    const token = authority.cli(['token', 'create', '--identity', 'agent-1'], caFile);
    const inject = { header: 'authorization', format: 'Bearer {{credential}}' };
    const sc = await startSidecarProc(
      {
        authority: { url: authority.url, caFile, bootstrap: { joinToken: { env: 'JT' } } },
        rotation: { backoff: { base: '100ms', cap: '400ms' } },
        routes: {
          leased: { upstream: upstream.url, credential: 'llm', inject, allow: ['GET /**'] },
          local: { upstream: upstream.url, credential: { file: localFile }, inject, allow: ['GET /**'] },
        },
      },
      { JT: token },
    );
    sidecar = sc.proc;
    const agents = [agentLoop(`${sc.url}/leased/x`), agentLoop(`${sc.url}/local/x`)];

    writeFileSync(localFile, `${NEW_LOCAL}\n`);
    writeFileSync(leasedFile, `${NEW_LEASED}\n`);
    await waitFor(() => seen.includes(NEW_LOCAL), { timeoutMs: 5_000, message: 'the new local key in use' });
    await nextEvent(sidecar, 'credential.rotated');
    await nextEvent(sidecar, 'credential.rotated');
    const cut = seen.length;
    await waitFor(() => seen.length > cut + 10, { timeoutMs: 5_000 });
    expect(new Set(seen.slice(cut))).toEqual(new Set([NEW_LOCAL, NEW_LEASED]));
    // The vendor revokes the old keys: every request still succeeds.
    valid.delete(OLD_LOCAL);
    valid.delete(OLD_LEASED);
    await waitFor(() => seen.length > cut + 30, { timeoutMs: 5_000 });
    const results = await Promise.all(agents.map((a) => a.stop()));
    for (const r of results) expect(r.failures).toEqual([]);
  });
});
