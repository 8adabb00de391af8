import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { revoke as cliRevoke } from '../../src/bin/admin.js';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Version skew between a sidecar and a newer authority (docs/rotation.md, "Across
 * versions"). The newer authority is simulated by a real HTTPS server holding a genuine
 * certificate of the CA the sidecar trusts, signing the sidecar's real CSR with leash's own
 * CA code, and answering as a newer leash plausibly would:
 * - extra fields in identity and lease answers: accepted (additive);
 * - a field the sidecar needs, missing: that answer refused, a clear reason, nothing used;
 * - a field marked critical (`crit`) that the sidecar does not understand (a new credential
 *   kind, a binding it would have to apply): that route's lease refused, the others served.
 */
const HOUR = 3_600_000;
const ID = 'spiffe://leash.local/join/agent-1';
let ca: CertificateAuthority;
let authority: Upstream;
let upstream: Upstream;
let sidecar: RunningSidecar | undefined;
/** How the newer authority answers a lease of each credential name. */
let leaseAnswer: (credential: string, base: Record<string, unknown>) => Record<string, unknown> | undefined;
let identityExtra: Record<string, unknown> = {};
const seen: string[] = [];

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

async function body(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
}

function newerAuthority(req: IncomingMessage, res: ServerResponse): void {
  void body(req).then((b) => {
    const now = Date.now();
    if (req.method === 'POST' && (req.url === '/v1/bootstrap' || req.url === '/v1/identity/renew')) {
      const signed = ca.signCsr(String(b.csr), ID, HOUR, now);
      return json(res, 200, {
        identity: ID,
        certificate: signed.certificate,
        ca: ca.caPem,
        issuedAt: new Date(now).toISOString(),
        expiresAt: signed.notAfter.toISOString(),
        ttlSeconds: HOUR / 1000,
        // Newer fields an older sidecar does without.
        attestedBy: 'join_token',
        renewAfter: new Date(now + HOUR / 2).toISOString(),
        ...identityExtra,
      });
    }
    // As the real authority: everything past bootstrap needs a client certificate of its CA.
    if (req.url !== '/v1/bootstrap' && !req.url?.startsWith('/v1/admin/') && !(req.socket as TLSSocket).authorized) return json(res, 401, { error: { code: 'LEASH_ERR_UNAUTHENTICATED', message: 'client certificate required' } });
    if (req.method === 'POST' && req.url === '/v1/leases') {
      const credential = String(b.credential);
      const value = `tok-${credential}-${randomUUID()}`;
      const base = {
        lease: `l-${randomUUID()}`,
        credential,
        value,
        fingerprint: `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 12)}`,
        version: '1',
        issuedAt: new Date(now).toISOString(),
        expiresAt: new Date(now + 300_000).toISOString(),
        ttlSeconds: 300,
        // Newer, additive.
        kind: 'bearer',
        renewAfter: new Date(now + 150_000).toISOString(),
        usage: { maxRequests: 1000 },
      };
      const answer = leaseAnswer(credential, base);
      return answer ? json(res, 200, answer) : json(res, 404, { error: { code: 'LEASH_ERR_NOT_FOUND', message: 'no such credential' } });
    }
    if (req.method === 'DELETE' && req.url?.startsWith('/v1/leases/')) return json(res, 200, { released: true });
    // A newer authority that answers a credential revocation as a narrower scope of its own.
    if (req.method === 'POST' && req.url === '/v1/admin/revoke') {
      return json(res, 200, { revocation: { id: `${now}-0`, scope: 'route', target: 'search', reason: '', at: new Date(now).toISOString(), by: 'admin' }, leases: 1 });
    }
    json(res, 404, { error: { code: 'LEASH_ERR_NOT_FOUND', message: 'not found' } });
  });
}

beforeAll(async () => {
  ca = CertificateAuthority.generate('leash.local');
  const tls = ca.serverCertificate(['localhost'], ['127.0.0.1'], HOUR);
  authority = await startUpstream(newerAuthority, createServer({ cert: tls.certPem, key: tls.keyPem, ca: ca.caPem, requestCert: true, rejectUnauthorized: false }));
  upstream = await startUpstream((req, res) => {
    seen.push(String(req.headers.authorization));
    res.end('ok');
  });
});
afterAll(async () => {
  await upstream?.close();
  await authority?.close();
});
afterEach(async () => {
  await sidecar?.stop();
  sidecar = undefined;
  identityExtra = {};
  seen.length = 0;
});

async function start(routes: string[]): Promise<RunningSidecar> {
  const route = (credential: string) => ({ upstream: upstream.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] });
  sidecar = await startSidecar(
    {
      authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
      routes: Object.fromEntries(routes.map((r) => [r, route(r)])),
    },
    { authorityCa: ca.caPem, joinToken: () => 'join-token-for-a-stub' },
  );
  return sidecar;
}

const metrics = async (s: RunningSidecar) => (await fetch(`${s.adminUrl}/metrics`)).text();

describe('a sidecar meets a newer authority', () => {
  it('extra fields in identity and lease answers are accepted; the leased value is injected', async () => {
    leaseAnswer = (_c, base) => base;
    const s = await start(['plain']);
    const res = await fetch(`${s.url}/plain/x`);
    expect(res.status).toBe(200);
    expect(seen[0]).toMatch(/^Bearer tok-plain-/);
    expect(s.sidecar.identity?.identity).toBe(ID);
  });

  it('a critical field it does not understand: that route refuses its lease (503), with a clear reason; the other route serves', async () => {
    leaseAnswer = (c, base) => (c === 'bound' ? { ...base, kind: 'dpop', binding: { jkt: 'x' }, crit: ['kind', 'binding'] } : base);
    const s = await start(['plain', 'bound']);
    expect((await fetch(`${s.url}/plain/x`)).status).toBe(200);
    await waitFor(async () => /leash_credential_rotations_total\{route="bound",result="rejected"\} [1-9]/.test(await metrics(s)), { timeoutMs: 3_000, message: 'bound rejected' });
    const refused = await fetch(`${s.url}/bound/x`);
    expect(refused.status).toBe(503);
    expect(seen.every((h) => h.startsWith('Bearer tok-plain-'))).toBe(true);
    const line = s.logs.lines.find((l) => l.includes('critical, which this sidecar does not understand'));
    expect(line, s.logs.lines.filter((l) => l.includes('bound')).join('\n')).toBeDefined();
    expect(line).toContain('\\"kind\\", \\"binding\\"');
    expect(line).not.toContain('tok-bound-');
    expect((await fetch(`${s.url}/plain/y`)).status).toBe(200);
  });

  it('a field the sidecar needs, missing from a lease answer: refused with the field named, nothing forwarded', async () => {
    leaseAnswer = (c, base) => {
      if (c !== 'short') return base;
      const { fingerprint: _f, ...rest } = base;
      return rest;
    };
    const s = await start(['plain', 'short']);
    await waitFor(async () => /leash_credential_rotations_total\{route="short",result="rejected"\} [1-9]/.test(await metrics(s)), { timeoutMs: 3_000, message: 'short rejected' });
    expect((await fetch(`${s.url}/short/x`)).status).toBe(503);
    expect(s.logs.lines.some((l) => l.includes('missing \\"version\\" or \\"fingerprint\\"'))).toBe(true);
    expect((await fetch(`${s.url}/plain/x`)).status).toBe(200);
  });

  it('an identity answer with a critical field it does not understand: no identity, nothing leased or forwarded', async () => {
    identityExtra = { crit: ['renewAfter'] };
    leaseAnswer = (_c, base) => base;
    const s = await start(['plain']);
    await waitFor(() => s.logs.lines.some((l) => l.includes('identity answer rejected') && l.includes('renewAfter')), { timeoutMs: 3_000, message: () => `identity refused; logs:\n${s.logs.lines.slice(-8).join('\n')}` });
    expect(s.sidecar.identity?.identity).toBeUndefined();
    expect((await fetch(`${s.url}/plain/x`)).status).toBe(503);
    expect(seen).toEqual([]);
  });

  it('leash revoke shows a revocation the authority answers with a scope it does not know, as written, and says so', async () => {
    const line = await cliRevoke({ url: new URL(authority.url), caPem: ca.caPem, token: 'admin-token' }, { credential: 'search' });
    expect(line).toMatch(/^revoked route search \(\d+-0; scope unknown to this leash, which is older than the authority\)$/);
  });
});
