import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { verifyClientCertificate } from '../../src/pki/verify.js';
import { ClientCertificateError } from '../../src/pki/errors.js';
import { certificateInfo, createCsr } from '../../src/pki/x509.js';
import { checkLeaseResponse } from '../../src/sidecar/credentials/lease-response.js';
import { ADMIN_TOKEN, startAuthority, type TestAuthority } from '../helpers/authority.js';
import { call, errorCode, errorMessage, keyAndCsr, rogueIdentity, signedBy, sleep, type CallOptions, type TlsIdentity } from '../helpers/authority-sec-tls.js';

/**
 * The authority's HTTPS API under attack, with real TLS and real certificates: every
 * identity is bootstrapped through POST /v1/bootstrap, every forged or stale certificate
 * is signed either by the authority's own CA key or by a second CA made the same way.
 * A refusal must be a refusal: the right status and code, and nothing issued.
 */

const TD = 'leash.local';
const HOUR = 3_600_000;
const CONFIG = {
  trustDomain: TD,
  credentials: {
    search: { kind: 'jwt', audience: 'search-api', scopes: ['search:read'], ttl: '5m' },
    secret: { kind: 'jwt', audience: 'other', ttl: '5m' },
  },
  policies: [{ identities: ['join:agent-*'], credentials: ['search'], maxTtl: '1h' }],
};

let authority: TestAuthority;
let agentA: TlsIdentity & { identity: string };
let agentB: TlsIdentity & { identity: string };

const req = (method: string, path: string, opts: CallOptions = {}) => call(authority.url, authority.caPem, method, path, opts);
const allLeases = () => authority.running.store.listLeases();
const metrics = () => authority.running.metrics.registry.metrics();
const metricValue = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
};

const totalDenials = (text: string): number =>
  text
    .split('\n')
    .filter((l) => l.startsWith('leash_authority_policy_denials_total{'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);

async function bootstrap(name: string): Promise<TlsIdentity & { identity: string }> {
  const { key, csr } = keyAndCsr();
  const res = await req('POST', '/v1/bootstrap', { body: { joinToken: await authority.token(name), csr } });
  expect(res.status).toBe(200);
  const body = res.json as { identity: string; certificate: string; ca: string };
  return { identity: body.identity, cert: body.certificate, key };
}

/** Lease "search" with `identity` and expect a 401 with no lease, no lease.issued audit, no issued metric. */
async function expectUnauthenticatedLease(identity: TlsIdentity | undefined): Promise<string> {
  const before = (await allLeases()).length;
  const issuedBefore = authority.logs.events('lease.issued').length;
  const res = await req('POST', '/v1/leases', { identity, body: { credential: 'search' } });
  expect(res.status).toBe(401);
  expect(errorCode(res)).toBe('LEASH_ERR_UNAUTHENTICATED');
  expect(res.text).not.toMatch(/"value"/);
  expect((await allLeases()).length).toBe(before);
  expect(authority.logs.events('lease.issued').length).toBe(issuedBefore);
  return String(errorMessage(res));
}

beforeAll(async () => {
  authority = await startAuthority(CONFIG);
  agentA = await bootstrap('agent-a');
  agentB = await bootstrap('agent-b');
});

afterAll(async () => {
  await authority?.stop();
});

describe('mTLS: a bootstrapped identity certificate', () => {
  it('is a real client certificate from the authority CA (checked with Node crypto) and leases a credential', async () => {
    const x = new X509Certificate(agentA.cert);
    expect(x.verify(authority.running.ca.certificate.publicKey)).toBe(true);
    expect(x.checkIssued(authority.running.ca.certificate)).toBe(true);
    expect(x.ca).toBe(false);
    expect(certificateInfo(agentA.cert).uriSans).toEqual(['spiffe://leash.local/join/agent-a']);
    expect(agentA.identity).toBe('spiffe://leash.local/join/agent-a');

    const res = await req('POST', '/v1/leases', { identity: agentA, body: { credential: 'search' } });
    expect(res.status).toBe(200);
    const checked = checkLeaseResponse(res.json, 'search');
    expect(checked.ok).toBe(true);
    const lease = (res.json as { lease: string }).lease;
    const stored = await authority.running.store.getLease(lease);
    expect(stored?.instance).toBe(agentA.identity);
    expect(stored?.credential).toBe('search');
    // The store keeps a fingerprint, never the value.
    expect(JSON.stringify(stored)).not.toContain((res.json as { value: string }).value);
  });
});

describe('mTLS: refused certificates (401 LEASH_ERR_UNAUTHENTICATED, nothing issued)', () => {
  it('no client certificate', async () => {
    await expectUnauthenticatedLease(undefined);
    const renew = await req('POST', '/v1/identity/renew', { body: { csr: keyAndCsr().csr } });
    expect(renew.status).toBe(401);
  });

  it('a certificate from a foreign CA for the same SPIFFE ID (same CA subject name: a real forgery attempt)', async () => {
    const foreign = CertificateAuthority.generate(TD);
    // Same issuer name as the real CA, so chain building finds the real CA and only the signature differs.
    expect(foreign.certificate.subject).toBe(authority.running.ca.certificate.subject);
    const forged = signedBy(foreign, agentA.identity, HOUR);
    expect(new X509Certificate(forged.cert).verify(authority.running.ca.certificate.publicKey)).toBe(false);
    await expectUnauthenticatedLease(forged);
    // It cannot renew itself into a real identity either.
    const renew = await req('POST', '/v1/identity/renew', { identity: forged, body: { csr: keyAndCsr().csr } });
    expect(renew.status).toBe(401);
    expect(renew.text).not.toContain('BEGIN CERTIFICATE');
  });

  it('an expired certificate signed by the authority CA itself', async () => {
    const expired = signedBy(authority.running.ca, agentA.identity, HOUR, Date.now() - 3 * HOUR);
    const x = new X509Certificate(expired.cert);
    expect(x.verify(authority.running.ca.certificate.publicKey)).toBe(true); // genuine signature: only time is wrong
    expect(new Date(x.validTo).getTime()).toBeLessThan(Date.now());
    await expectUnauthenticatedLease(expired);
    const renew = await req('POST', '/v1/identity/renew', { identity: expired, body: { csr: keyAndCsr().csr } });
    expect(renew.status).toBe(401);
    expect(errorCode(renew)).toBe('LEASH_ERR_UNAUTHENTICATED');
  });

  it('a not-yet-valid certificate signed by the authority CA itself', async () => {
    const future = signedBy(authority.running.ca, agentA.identity, HOUR, Date.now() + 2 * HOUR);
    const x = new X509Certificate(future.cert);
    expect(x.verify(authority.running.ca.certificate.publicKey)).toBe(true);
    expect(new Date(x.validFrom).getTime()).toBeGreaterThan(Date.now());
    await expectUnauthenticatedLease(future);
  });

  it('a certificate for another trust domain, signed with the authority CA key', async () => {
    // The same CA certificate and key, loaded for another trust domain: signCsr then issues spiffe://other.local/...
    const sameKeyOtherDomain = CertificateAuthority.load(authority.caPem, authority.running.ca.exportPrivateKeyPem(), 'other.local');
    const other = signedBy(sameKeyOtherDomain, 'spiffe://other.local/join/agent-a', HOUR);
    expect(new X509Certificate(other.cert).verify(authority.running.ca.certificate.publicKey)).toBe(true);
    expect(certificateInfo(other.cert).uriSans).toEqual(['spiffe://other.local/join/agent-a']);
    const message = await expectUnauthenticatedLease(other);
    expect(message).toMatch(/trust domain/);
  });

  it('a CA:TRUE certificate signed by the authority CA (TLS accepts it; the identity check refuses it)', async () => {
    const caLeaf = rogueIdentity(authority.running.ca, agentA.identity, { caPathLen: 0, keyUsage: ['keyCertSign', 'digitalSignature'] });
    const x = new X509Certificate(caLeaf.cert);
    expect(x.ca).toBe(true);
    expect(x.verify(authority.running.ca.certificate.publicKey)).toBe(true);
    let reason: string | undefined;
    try {
      verifyClientCertificate(x, authority.running.ca.certificate, TD);
    } catch (err) {
      reason = (err as ClientCertificateError).reason;
    }
    expect(reason).toBe('ca_certificate');
    const message = await expectUnauthenticatedLease(caLeaf);
    expect(message).toMatch(/CA certificate/);
  });

  it('a certificate without clientAuth, or with two URI SANs, signed by the authority CA', async () => {
    const serverOnly = rogueIdentity(authority.running.ca, agentA.identity, { extKeyUsage: ['1.3.6.1.5.5.7.3.1'] });
    await expectUnauthenticatedLease(serverOnly);
    const twoIds = rogueIdentity(authority.running.ca, agentA.identity, { san: { uris: [agentA.identity, agentB.identity] } });
    await expectUnauthenticatedLease(twoIds);
  });

  it('a refused certificate cannot release a real lease either', async () => {
    const ok = await req('POST', '/v1/leases', { identity: agentA, body: { credential: 'search' } });
    const lease = (ok.json as { lease: string }).lease;
    const forged = signedBy(CertificateAuthority.generate(TD), agentA.identity, HOUR);
    const expired = signedBy(authority.running.ca, agentA.identity, HOUR, Date.now() - 3 * HOUR);
    for (const id of [undefined, forged, expired]) {
      const res = await req('DELETE', `/v1/leases/${lease}`, { identity: id });
      expect(res.status).toBe(401);
      expect(await authority.running.store.getLease(lease)).toBeDefined();
    }
  });
});

describe('join tokens', () => {
  const failures = async () => metricValue(await metrics(), 'leash_authority_bootstrap_total{method="join_token",result="failure"}');

  it('a replayed token is refused the second time (401), and the second key gets no certificate', async () => {
    const token = await authority.token('agent-replay');
    const first = await req('POST', '/v1/bootstrap', { body: { joinToken: token, csr: keyAndCsr().csr } });
    expect(first.status).toBe(200);
    const before = await failures();
    const second = await req('POST', '/v1/bootstrap', { body: { joinToken: token, csr: keyAndCsr().csr } });
    expect(second.status).toBe(401);
    expect(errorCode(second)).toBe('LEASH_ERR_UNAUTHENTICATED');
    expect(second.text).not.toContain('BEGIN CERTIFICATE');
    expect(await failures()).toBe(before + 1);
  });

  it('an expired token is refused (401)', async () => {
    const token = await authority.token('agent-late', 1);
    await sleep(20);
    const res = await req('POST', '/v1/bootstrap', { body: { joinToken: token, csr: keyAndCsr().csr } });
    expect(res.status).toBe(401);
    expect(errorCode(res)).toBe('LEASH_ERR_UNAUTHENTICATED');
  });

  it('garbage, well-shaped-but-unknown, empty and non-string tokens are refused without a certificate', async () => {
    const unknown = `leash_jt_${'A'.repeat(43)}`;
    const answers = [];
    for (const joinToken of ['garbage', unknown, 'leash_jt_', `${unknown}\r\nx: y`, 'ä'.repeat(100)]) {
      const res = await req('POST', '/v1/bootstrap', { body: { joinToken, csr: keyAndCsr().csr } });
      expect(res.status).toBe(401);
      expect(errorCode(res)).toBe('LEASH_ERR_UNAUTHENTICATED');
      answers.push(res.text);
    }
    // Unknown, garbage and malformed tokens are indistinguishable.
    expect(new Set(answers).size).toBe(1);
    for (const joinToken of [null, 42, ['x'], { a: 1 }, '']) {
      const res = await req('POST', '/v1/bootstrap', { body: { joinToken, csr: keyAndCsr().csr } });
      expect([400, 401]).toContain(res.status);
      expect(res.text).not.toContain('BEGIN CERTIFICATE');
    }
  });

  it('a valid token with a CSR for the CA own key, or a broken CSR, gives no certificate (and 4xx, not 5xx)', async () => {
    const res = await req('POST', '/v1/bootstrap', { body: { joinToken: await authority.token('agent-csr'), csr: 'not a csr' } });
    expect(res.status).toBe(400);
    expect(res.text).not.toContain('BEGIN CERTIFICATE');
    const caKeyCsr = createCsr({ privateKeyPem: authority.running.ca.exportPrivateKeyPem() }, 'leash-sidecar');
    const own = await req('POST', '/v1/bootstrap', { body: { joinToken: await authority.token('agent-csr2'), csr: caKeyCsr } });
    expect(own.status).toBe(400);
    expect(own.text).not.toContain('BEGIN CERTIFICATE');
  });
});

describe('leases belong to their identity', () => {
  it('identity A cannot release identity B lease: 404 like a lease that does not exist; B lease stays', async () => {
    const b = await req('POST', '/v1/leases', { identity: agentB, body: { credential: 'search' } });
    expect(b.status).toBe(200);
    const bLease = (b.json as { lease: string }).lease;

    const cross = await req('DELETE', `/v1/leases/${encodeURIComponent(bLease)}`, { identity: agentA });
    expect(cross.status).toBe(404);
    expect(errorCode(cross)).toBe('LEASH_ERR_NOT_FOUND');
    const stored = await authority.running.store.getLease(bLease);
    expect(stored?.instance).toBe(agentB.identity);

    const missing = await req('DELETE', `/v1/leases/${'x'.repeat(bLease.length)}`, { identity: agentA });
    expect(missing.status).toBe(404);
    expect(missing.text).toBe(cross.text); // not an oracle for other identities' lease ids

    for (const path of [`/v1/leases/${encodeURIComponent('../' + bLease)}`, `/v1/leases/${encodeURIComponent(bLease)}%00`, `/v1/leases/%E0%A4%A`]) {
      const odd = await req('DELETE', path, { identity: agentA });
      expect(odd.status).toBeGreaterThanOrEqual(400);
      expect(odd.status).toBeLessThan(500);
    }
    expect(await authority.running.store.getLease(bLease)).toBeDefined();

    // B itself can release it.
    const own = await req('DELETE', `/v1/leases/${encodeURIComponent(bLease)}`, { identity: agentB });
    expect(own.status).toBe(200);
    expect(await authority.running.store.getLease(bLease)).toBeUndefined();
  });

  it('there is no lease renewal endpoint to abuse: leases are re-issued, so no path extends B lease', async () => {
    const b = await req('POST', '/v1/leases', { identity: agentB, body: { credential: 'search' } });
    const bLease = (b.json as { lease: string }).lease;
    const before = await authority.running.store.getLease(bLease);
    for (const [method, path] of [
      ['POST', `/v1/leases/${bLease}`],
      ['PUT', `/v1/leases/${bLease}`],
      ['PATCH', `/v1/leases/${bLease}`],
      ['POST', `/v1/leases/${bLease}/renew`],
    ] as const) {
      const res = await req(method, path, { identity: agentA, body: { ttlSeconds: 3600 } });
      expect(res.status).toBe(404);
    }
    expect(await authority.running.store.getLease(bLease)).toEqual(before);
  });
});

describe('policy', () => {
  it('an identity no rule matches: 403 LEASH_ERR_POLICY_DENIED, audited as policy.denied, counted', async () => {
    const outsider = await bootstrap('outsider');
    const deniedBefore = metricValue(await metrics(), 'leash_authority_policy_denials_total{credential="search"}');
    const auditBefore = authority.logs.events('policy.denied').length;
    const leasesBefore = (await allLeases()).length;
    const res = await req('POST', '/v1/leases', { identity: outsider, body: { credential: 'search' } });
    expect(res.status).toBe(403);
    expect(errorCode(res)).toBe('LEASH_ERR_POLICY_DENIED');
    expect(res.text).not.toMatch(/"value"/);
    const audits = authority.logs.events('policy.denied').slice(auditBefore);
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ audit: true, identity: outsider.identity, credential: 'search' });
    expect(metricValue(await metrics(), 'leash_authority_policy_denials_total{credential="search"}')).toBe(deniedBefore + 1);
    expect((await allLeases()).length).toBe(leasesBefore);
  });

  it('an unknown credential gets the same answer as a forbidden one (names are not an oracle)', async () => {
    const leasesBefore = (await allLeases()).length;
    const auditBefore = authority.logs.events('policy.denied').length;
    const deniedBefore = totalDenials(await metrics());
    const forbidden = await req('POST', '/v1/leases', { identity: agentA, body: { credential: 'secret' } });
    const unknown = await req('POST', '/v1/leases', { identity: agentA, body: { credential: 'nosuch' } });
    expect(forbidden.status).toBe(403);
    expect(unknown.status).toBe(403);
    expect(errorCode(unknown)).toBe(errorCode(forbidden));
    expect(Object.keys(unknown.json as object)).toEqual(Object.keys(forbidden.json as object));
    expect(String(errorMessage(unknown)).replace('nosuch', 'NAME')).toBe(String(errorMessage(forbidden)).replace('secret', 'NAME'));
    expect(unknown.headers['content-type']).toBe(forbidden.headers['content-type']);
    expect(authority.logs.events('policy.denied').length).toBe(auditBefore + 2);
    expect((await allLeases()).length).toBe(leasesBefore);
    // Both are counted as denials (which label an unknown name gets is left to the metrics design).
    expect(totalDenials(await metrics())).toBe(deniedBefore + 2);
  });
});

describe('admin endpoints', () => {
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  it('refuse a missing, wrong, wrongly-sized or wrongly-schemed bearer token with 401 (never 500)', async () => {
    const wrongs: Array<Record<string, string>> = [
      {},
      bearer(''),
      bearer(ADMIN_TOKEN.slice(0, -1) + (ADMIN_TOKEN.endsWith('x') ? 'y' : 'x')), // same length
      bearer('x'), // shorter
      bearer(ADMIN_TOKEN + 'x'), // one longer
      bearer('A'.repeat(8000)), // much longer
      bearer(` ${ADMIN_TOKEN}`),
      { authorization: ADMIN_TOKEN },
      { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
      { authorization: `bearer ${ADMIN_TOKEN}x` },
    ];
    const tokensBefore = authority.logs.lines.filter((l) => l.includes('"token.created"')).length;
    for (const headers of wrongs) {
      const t = await req('POST', '/v1/admin/tokens', { headers, body: { identity: 'agent-admin', ttl: '10m' } });
      expect(t.status, JSON.stringify(headers).slice(0, 80)).toBe(401);
      expect(errorCode(t)).toBe('LEASH_ERR_UNAUTHENTICATED');
      expect(t.text).not.toContain('leash_jt_');
      const l = await req('GET', '/v1/admin/leases', { headers });
      expect(l.status).toBe(401);
      expect(l.text).not.toContain('spiffe://');
    }
    // A sidecar's client certificate is not an admin credential.
    const withCert = await req('GET', '/v1/admin/leases', { identity: agentA });
    expect(withCert.status).toBe(401);
    expect(authority.logs.lines.filter((l) => l.includes('"token.created"')).length).toBe(tokensBefore);
  });

  it('a join token request with a ttl that is not a duration string is refused, not given the default', async () => {
    for (const ttl of [600, true, null, ['10m'], { m: 10 }, '', 'soon']) {
      const t = await req('POST', '/v1/admin/tokens', { headers: bearer(ADMIN_TOKEN), body: { identity: 'agent-admin', ttl } });
      expect(t.status, JSON.stringify(ttl)).toBe(400);
      expect(t.text).not.toContain('leash_jt_');
    }
    const t = await req('POST', '/v1/admin/tokens', { headers: bearer(ADMIN_TOKEN), body: { identity: 'agent-admin' } });
    expect(t.status).toBe(200);
  });

  it('the right token works: a join token that bootstraps, and the lease list', async () => {
    const t = await req('POST', '/v1/admin/tokens', { headers: bearer(ADMIN_TOKEN), body: { identity: 'agent-admin', ttl: '10m' } });
    expect(t.status).toBe(200);
    const token = (t.json as { token: string }).token;
    expect(token).toMatch(/^leash_jt_[A-Za-z0-9_-]{43}$/);
    const boot = await req('POST', '/v1/bootstrap', { body: { joinToken: token, csr: keyAndCsr().csr } });
    expect(boot.status).toBe(200);
    expect((boot.json as { identity: string }).identity).toBe('spiffe://leash.local/join/agent-admin');

    const l = await req('GET', `/v1/admin/leases?instance=${encodeURIComponent(agentA.identity)}`, { headers: bearer(ADMIN_TOKEN) });
    expect(l.status).toBe(200);
    const leases = (l.json as { leases: Array<{ instance: string; fingerprint: string }> }).leases;
    expect(leases.length).toBeGreaterThan(0);
    expect(leases.every((x) => x.instance === agentA.identity && /^sha256:[0-9a-f]{12}$/.test(x.fingerprint))).toBe(true);
    expect(l.text).not.toMatch(/"value"/);
  });
});

describe('hostile bodies', () => {
  it('a request body over 64 KiB is answered 413', async () => {
    const big = JSON.stringify({ credential: 'search', pad: 'x'.repeat(70 * 1024) });
    const res = await req('POST', '/v1/leases', { identity: agentA, raw: big });
    expect(res.status).toBe(413);
    const boot = await req('POST', '/v1/bootstrap', { raw: JSON.stringify({ joinToken: 'x', csr: 'y'.repeat(65 * 1024) }) });
    expect(boot.status).toBe(413);
  });

  it('an endless upload gets its 413 and the connection is cut after a bounded drain', async () => {
    // A raw TLS socket, so the client keeps sending after the answer (an HTTP client would stop).
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const outcome = await new Promise<{ answer: string; written: number; ms: number }>((resolve) => {
      const started = performance.now();
      let answer = '';
      let written = 0;
      let done = false;
      const url = new URL(authority.url);
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: authority.caPem });
      const finish = () => {
        if (done) return;
        done = true;
        socket.destroy();
        resolve({ answer, written, ms: performance.now() - started });
      };
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', finish);
      socket.on('close', finish);
      const limit = 64 * 1024 * 1024;
      const pump = () => {
        while (!done && written < limit) {
          written += chunk.length;
          if (!socket.write(`${chunk.length.toString(16)}\r\n${chunk.toString('latin1')}\r\n`, 'latin1')) return void socket.once('drain', pump);
        }
        if (!done) finish();
      };
      socket.once('secureConnect', () => {
        socket.write(`POST /v1/bootstrap HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`);
        pump();
      });
    });
    expect(outcome.answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(outcome.written).toBeLessThan(16 * 1024 * 1024); // the server cut it long before 64 MiB
    expect(outcome.ms).toBeLessThan(5_000);
    expect((await req('GET', '/healthz')).status).toBe(200);
  });

  it('a non-JSON body is answered 400, and JSON of the wrong shape is 400, not 500', async () => {
    for (const raw of ['{not json', '\u0000\u0001', '{"credential": "search"', 'credential=search']) {
      const res = await req('POST', '/v1/leases', { identity: agentA, raw });
      expect(res.status, raw).toBe(400);
      expect(errorCode(res)).toBe('LEASH_ERR_AUTHORITY_BAD_REQUEST');
    }
    for (const body of [null, [], 'search', 42, { credential: 42 }, { credential: ['search'] }]) {
      const res = await req('POST', '/v1/leases', { identity: agentA, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    for (const body of [null, [], { joinToken: 'x' }, { csr: 'x' }]) {
      const res = await req('POST', '/v1/bootstrap', { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
  });

  it('after all of the above the authority still serves: health, bootstrap and leases', async () => {
    const health = await req('GET', '/healthz');
    expect(health.status).toBe(200);
    const fresh = await bootstrap('agent-after');
    const res = await req('POST', '/v1/leases', { identity: fresh, body: { credential: 'search' } });
    expect(res.status).toBe(200);
    expect(checkLeaseResponse(res.json, 'search').ok).toBe(true);
    expect(authority.running.server.server.listening).toBe(true);
    expect(authority.logs.lines.filter((l) => l.includes('"level":50') || l.includes('authority request failed'))).toEqual([]);
  });
});
