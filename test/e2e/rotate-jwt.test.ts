import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { createVerifier, VerifyError, type Verifier } from '../../src/verify/index.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { agentLoop, AuthorityProc, nextEvent, startSidecarProc, killAll } from '../helpers/rotate-fleet.js';
import type { Proc } from '../helpers/fleet-procs.js';
import { writeTemp } from '../helpers/spawn.js';
import { waitFor } from '../helpers/wait.js';

/**
 * JWT signing keys rotated with two replicas and a leash/verify service, every process real,
 * the agent sending a request every 50 ms. The Secret holding the keys reaches the two
 * replicas' pods at different times (each replica has its own copy of the directory here,
 * updated one after the other), and the verifier's JWKS requests land on the replica that
 * is behind while the sidecar leases from the one ahead — the worst case behind one Service.
 *
 * Before: the last key by name signed as soon as a replica saw it, so replica A signed with
 * the new key while replica B did not publish it yet: the verifier's refetch for the
 * unknown kid got B's JWKS, refused the token (401), and refused every further new-kid
 * token for jwksMinRefetchMs (503). Now a key named `*.next.pem` is published and never
 * signs; renamed to `*.pem` once every replica publishes it, it signs.
 */
const AUDIENCE = 'inventory-api';

let redis: TestRedis | undefined;
let upstream: Upstream | undefined;
let verifier: Verifier | undefined;
const replicas: AuthorityProc[] = [];
let sidecar: Proc | undefined;

afterAll(async () => {
  await killAll([...replicas.flatMap((r) => r.all), ...(sidecar ? [sidecar] : [])]);
  await verifier?.close();
  await upstream?.close();
  await redis?.stop();
});

const newKey = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

describe('rotating the JWT signing keys across two replicas', () => {
  it('publishes a staged key everywhere before any replica signs with it: no token refused', { timeout: 60_000 }, async () => {
    redis = await startRedis();
    const ca = CertificateAuthority.generate('leash.local');
    const caFile = writeTemp('ca.pem', ca.caPem);
    const caKey = writeTemp('ca-key.pem', ca.exportPrivateKeyPem());
    const dirA = mkdtempSync(join(tmpdir(), 'leash-keys-a-'));
    const dirB = mkdtempSync(join(tmpdir(), 'leash-keys-b-'));
    const k1 = newKey();
    const k2 = newKey();
    for (const d of [dirA, dirB]) writeFileSync(join(d, '2026-01-01.pem'), k1);
    const config = (keysDir: string) => ({
      hostnames: ['127.0.0.1'],
      ca: { certFile: caFile, keyFile: caKey },
      signing: { keysDir, issuer: 'https://leash.test' },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      redis: redis!.url,
      // Short, so that the steps take seconds; long enough that a restart on a loaded machine
      // never outlasts half of a token's life.
      credentials: { inventory: { kind: 'jwt', audience: AUDIENCE, ttl: '6s' } },
      policies: [{ identities: ['join:agent-*'], credentials: ['inventory'], maxTtl: '6s' }],
    });
    const a = new AuthorityProc({});
    const b = new AuthorityProc({});
    replicas.push(a, b);
    await Promise.all([a.start(config(dirA)), b.start(config(dirB))]);

    // The service: every token checked by leash/verify against replica B's JWKS.
    verifier = createVerifier({ jwksUrl: `${b.url}/.well-known/jwks.json`, ca: ca.caPem, issuer: 'https://leash.test', audience: AUDIENCE });
    await verifier.ready();
    const refused: string[] = [];
    /** Key ids of the tokens the verifier accepted. */
    const acceptedKids = new Set<string>();
    upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      verifier!.verify(token).then(
        () => {
          acceptedKids.add((JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid);
          res.writeHead(200).end('ok');
        },
        (err: unknown) => {
          refused.push(err instanceof VerifyError ? `${err.code}: ${err.message}` : String(err));
          res.writeHead(err instanceof VerifyError && err.code === 'LEASH_VERIFY_UNAVAILABLE' ? 503 : 401).end('refused');
        },
      );
    });

    const token = a.cli(['token', 'create', '--identity', 'agent-1'], caFile);
    const sc = await startSidecarProc(
      {
        authority: { url: a.url, caFile, bootstrap: { joinToken: { env: 'JT' } } },
        rotation: { backoff: { base: '100ms', cap: '400ms' } },
        routes: { inventory: { upstream: upstream.url, credential: 'inventory', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      },
      { JT: token },
    );
    sidecar = sc.proc;
    const agent = agentLoop(`${sc.url}/inventory/items`);
    await nextEvent(sidecar, 'credential.rotated');

    // Phase 1: the new key is staged (published, not signing), reaching A first, then B.
    writeFileSync(join(dirA, '2027-01-01.next.pem'), k2);
    await a.restart(config(dirA));
    await nextEvent(sidecar, 'credential.rotated'); // a token from A after it saw the new key
    writeFileSync(join(dirB, '2027-01-01.next.pem'), k2);
    await b.restart(config(dirB));
    const jwks = JSON.parse((await b.get('/.well-known/jwks.json', ca.caPem)).body) as { keys: unknown[] };
    expect(jwks.keys).toHaveLength(2);
    // Phase 2: once every replica publishes it, the key signs (A first, then B).
    renameSync(join(dirA, '2027-01-01.next.pem'), join(dirA, '2027-01-01.pem'));
    await a.restart(config(dirA));
    await nextEvent(sidecar, 'credential.rotated'); // signed with the new key, checked against B's JWKS
    // B goes down for its own restart only once the verifier has met the new key (a refetch
    // from a replica that is down fails whatever leash does; a Service would route it to A).
    await waitFor(() => acceptedKids.size === 2, { timeoutMs: 10_000, message: 'a token of the new key accepted' });
    renameSync(join(dirB, '2027-01-01.next.pem'), join(dirB, '2027-01-01.pem'));
    await b.restart(config(dirB));
    // Phase 3: the old key goes once its last token has expired (the longest jwt ttl, 6 s).
    await nextEvent(sidecar, 'credential.rotated');
    await nextEvent(sidecar, 'credential.rotated');
    for (const d of [dirA, dirB]) rmSync(join(d, '2026-01-01.pem'));
    await a.restart(config(dirA));
    await b.restart(config(dirB));
    await nextEvent(sidecar, 'credential.rotated');
    const { sent, failures } = await agent.stop();

    expect(refused).toEqual([]);
    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(50);
    const after = JSON.parse((await b.get('/.well-known/jwks.json', ca.caPem)).body) as { keys: Array<{ kid: string }> };
    expect(after.keys).toHaveLength(1);
    // Both replicas sign with the new key (what an operator watches).
    for (const r of [a, b]) {
      const metrics = (await r.get('/metrics', ca.caPem)).body;
      expect(metrics).toContain(`leash_authority_signing_key_info{kid="${after.keys[0]!.kid}"} 1`);
    }
  });
});
