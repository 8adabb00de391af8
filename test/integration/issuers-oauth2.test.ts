import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IssuerError } from '../../src/authority/issuers/errors.js';
import { OAuth2Issuer, type OAuth2IssuerOptions } from '../../src/authority/issuers/oauth2.js';
import { fingerprint } from '../../src/core/fingerprint.js';
import { issueServerCert, makeCa } from '../helpers/proxy-tls.js';
import { TokenServer } from '../helpers/issuers-token-server.js';
import { rejection, request } from '../helpers/issuers-util.js';
import { sleep } from '../helpers/wait.js';

const SECRET = 'cs-very-secret value/with+odd:chars%';
let server: TokenServer;
const issuers: OAuth2Issuer[] = [];
beforeEach(async () => {
  server = await new TokenServer('leash-client', SECRET).start();
});
afterEach(async () => {
  for (const i of issuers.splice(0)) await i.close();
  await server.close();
});
function make(over: Partial<OAuth2IssuerOptions> = {}): OAuth2Issuer {
  const issuer = new OAuth2Issuer({ tokenUrl: server.url, clientId: 'leash-client', clientSecret: SECRET, credential: 'azure', ...over });
  issuers.push(issuer);
  return issuer;
}
const noSecretIn = (err: Error): void => {
  const all = `${err.message} ${JSON.stringify((err as IssuerError).context)} ${String((err as Error & { cause?: unknown }).cause ?? '')}`;
  expect(all).not.toContain(SECRET);
  expect(all).not.toContain('very-secret');
};

describe('OAuth2Issuer (client credentials against a real token endpoint)', () => {
  it('client_secret_basic: form body with grant_type and scope, Basic auth, one fresh token per lease', async () => {
    const issuer = make({ scope: 'api://x/.default', audience: 'https://api.example' });
    const req = request({ maxTtlMs: 7_200_000 });
    const a = await issuer.issue(req);
    const b = await issuer.issue(request());
    expect(a.value).toMatch(/^at-1-/);
    expect(b.value).toMatch(/^at-2-/); // no caching across leases
    expect(a.version).toBe(fingerprint(a.value));
    expect(a.issuedAtMs).toBe(req.nowMs);
    expect(a.expiresAtMs).toBe(req.nowMs + 3_600_000);
    const seen = server.seen[0]!;
    expect(seen.contentType).toBe('application/x-www-form-urlencoded');
    expect(seen.authorization).toMatch(/^Basic /);
    expect(seen.form).toEqual({ grant_type: 'client_credentials', scope: 'api://x/.default', audience: 'https://api.example' });
  });

  it('client_secret_post: credentials in the body, no Authorization header', async () => {
    const out = await make({ authMethod: 'client_secret_post' }).issue(request());
    expect(out.value).toMatch(/^at-/);
    expect(server.seen[0]!.authorization).toBeUndefined();
    expect(server.seen[0]!.form).toEqual({ grant_type: 'client_credentials', client_id: 'leash-client', client_secret: SECRET });
  });

  it('the secret may be a getter (a rotating file), read per call', async () => {
    let calls = 0;
    const out = await make({ clientSecret: async () => (calls++, SECRET) }).issue(request());
    expect(out.value).toMatch(/^at-/);
    expect(calls).toBe(1);
  });

  it('TTL = min(expires_in, ttl, maxTtl); a string expires_in is read; no expires_in needs a ttl', async () => {
    server.behaviour = { kind: 'ok', expiresIn: 3600 };
    let req = request({ maxTtlMs: 600_000 });
    expect((await make().issue(req)).expiresAtMs).toBe(req.nowMs + 600_000);
    req = request({ maxTtlMs: 7_200_000 });
    expect((await make({ ttlMs: 900_000 }).issue(req)).expiresAtMs).toBe(req.nowMs + 900_000);
    server.behaviour = { kind: 'ok', expiresIn: '120' };
    req = request({ maxTtlMs: 7_200_000 });
    expect((await make().issue(req)).expiresAtMs).toBe(req.nowMs + 120_000);
    server.behaviour = { kind: 'ok', omitExpiresIn: true };
    expect((await rejection(make().issue(request()))).code).toBe('LEASH_ERR_ISSUER_RESPONSE');
    req = request({ maxTtlMs: 7_200_000 });
    expect((await make({ ttlMs: 300_000 }).issue(req)).expiresAtMs).toBe(req.nowMs + 300_000);
    server.behaviour = { kind: 'ok', expiresIn: 0 };
    expect((await rejection(make().issue(request()))).code).toBe('LEASH_ERR_ISSUER_RESPONSE');
  });

  it('401 invalid_client → LEASH_ERR_ISSUER_UPSTREAM with the error code, without the secret (even when the body echoes it)', async () => {
    const err = await rejection(make({ clientSecret: `${SECRET}-wrong` }).issue(request({ credential: 'azure' })));
    expect(err).toBeInstanceOf(IssuerError);
    expect(err.code).toBe('LEASH_ERR_ISSUER_UPSTREAM');
    expect(err.message).toBe(`oauth2 issuer for credential "azure": token endpoint ${server.url} answered 401 invalid_client`);
    expect(err.context).toMatchObject({ status: 401, oauthError: 'invalid_client', credential: 'azure' });
    noSecretIn(err);
  });

  it('400 unsupported_grant_type and a non-JSON 500 are upstream errors; a bogus error field is not repeated', async () => {
    server.behaviour = { kind: 'raw', status: 400, body: '{"error":"unsupported_grant_type"}' };
    expect((await rejection(make().issue(request()))).message).toMatch(/answered 400 unsupported_grant_type$/);
    server.behaviour = { kind: 'raw', status: 500, body: '<html>oops</html>' };
    const err = await rejection(make().issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_UPSTREAM');
    expect(err.message).toMatch(/answered 500$/);
    server.behaviour = { kind: 'raw', status: 400, body: JSON.stringify({ error: 'x"\ny' }) };
    expect((await rejection(make().issue(request()))).message).toMatch(/answered 400$/);
  });

  it('an `error` that is free text, the client secret or a key is not repeated (a reflecting endpoint)', async () => {
    const basic = `Basic ${Buffer.from(`leash-client:${SECRET}`).toString('base64')}`;
    for (const error of [`invalid_client ${SECRET}`, SECRET, basic, 'Invalid client secret provided', 'ghs_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z']) {
      server.behaviour = { kind: 'raw', status: 401, body: JSON.stringify({ error: error }) };
      const err = await rejection(make().issue(request()));
      expect(err.message, error).toMatch(/answered 401$/);
      expect((err as IssuerError).context, error).not.toHaveProperty('oauthError');
      noSecretIn(err);
    }
    // A code-shaped secret (lower case, underscores) reflected alone is not repeated either.
    const shaped = 'q7vt2mn9_xk4pl8wr3zy6h_secret';
    server.behaviour = { kind: 'raw', status: 401, body: JSON.stringify({ error: shaped }) };
    const err = await rejection(make({ clientSecret: shaped }).issue(request()));
    expect(err.message).toMatch(/answered 401$/);
    expect(err.message).not.toContain(shaped);
  });

  it('an access_token no sidecar could inject (CR/LF, controls, non-ASCII, > 16 KiB) → LEASH_ERR_ISSUER_RESPONSE, not repeated', async () => {
    for (const token of ['zzq\r\nX-Injected: 1', 'zzq\u0000x', 'zzqö', 'zzq\u2028x', ' zzq', 'A'.repeat(16 * 1024 + 1)]) {
      server.behaviour = { kind: 'raw', status: 200, body: JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 60 }) };
      const err = await rejection(make().issue(request()));
      expect(err.code, JSON.stringify(token.slice(0, 20))).toBe('LEASH_ERR_ISSUER_RESPONSE');
      expect(err.message).not.toMatch(/zzq|AAAA/);
    }
    server.behaviour = { kind: 'raw', status: 200, body: JSON.stringify({ access_token: 'A'.repeat(16 * 1024), expires_in: 60 }) };
    expect((await make().issue(request())).value).toHaveLength(16 * 1024);
  });

  it('garbage JSON, a JSON array, and 200 without access_token → LEASH_ERR_ISSUER_RESPONSE, body never repeated', async () => {
    for (const body of ['{"access_token": "leaked-tok', '[1,2]', '{"token_type":"Bearer","expires_in":60,"oops":"leaked-tok"}']) {
      server.behaviour = { kind: 'raw', status: 200, body };
      const err = await rejection(make().issue(request()));
      expect(err.code, body).toBe('LEASH_ERR_ISSUER_RESPONSE');
      expect(err.message, body).not.toContain('leaked-tok');
      noSecretIn(err);
    }
  });

  it('a slow endpoint fails with LEASH_ERR_ISSUER_TIMEOUT at the timeout, not after the answer', async () => {
    server.behaviour = { kind: 'slow', delayMs: 3000 };
    const t0 = Date.now();
    const err = await rejection(make({ timeoutMs: 200 }).issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_TIMEOUT');
    expect(err.message).toContain('200ms');
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('an unreachable endpoint → LEASH_ERR_ISSUER_UPSTREAM naming the errno', async () => {
    const url = server.url;
    await server.close();
    server = await new TokenServer('x', 'y').start(); // for afterEach
    const err = await rejection(new OAuth2Issuer({ tokenUrl: url, clientId: 'c', clientSecret: SECRET }).issue(request()));
    expect(err.code).toBe('LEASH_ERR_ISSUER_UPSTREAM');
    expect(err.message).toContain('ECONNREFUSED');
    noSecretIn(err);
  });

  it('config: plain http only to loopback, no credentials in the URL, a client id', () => {
    expect(() => new OAuth2Issuer({ tokenUrl: 'http://idp.example/token', clientId: 'c', clientSecret: 's' })).toThrow(/must be https/);
    expect(() => new OAuth2Issuer({ tokenUrl: 'https://u:p@idp.example/token', clientId: 'c', clientSecret: 's' })).toThrow(/credentials/);
    for (const caPem of ['', '\n', 'not a certificate']) {
      expect(() => new OAuth2Issuer({ tokenUrl: 'https://idp.example/token', clientId: 'c', clientSecret: 's', caPem })).toThrow(/caFile holds no PEM certificate/);
    }
    expect(() => new OAuth2Issuer({ tokenUrl: 'not a url', clientId: 'c', clientSecret: 's' })).toThrow(IssuerError);
    expect(() => new OAuth2Issuer({ tokenUrl: 'https://idp.example/token', clientId: '', clientSecret: 's' })).toThrow(/clientId/);
  });

  it('close() aborts a call in flight and refuses new ones', async () => {
    server.behaviour = { kind: 'slow', delayMs: 3000 };
    const issuer = make();
    const pending = rejection(issuer.issue(request()));
    await sleep(50);
    await issuer.close();
    expect((await pending).code).toBe('LEASH_ERR_ISSUER_CLOSED');
    expect((await rejection(issuer.issue(request()))).code).toBe('LEASH_ERR_ISSUER_CLOSED');
  });
});

describe('OAuth2Issuer over TLS', () => {
  it('verifies the endpoint: a private CA works with caPem and fails without it', async () => {
    const ca = makeCa();
    const tlsServer = await new TokenServer('leash-client', SECRET, issueServerCert(ca)).start();
    try {
      const good = new OAuth2Issuer({ tokenUrl: tlsServer.url, clientId: 'leash-client', clientSecret: SECRET, caPem: ca.certPem });
      issuers.push(good);
      expect((await good.issue(request())).value).toMatch(/^at-1-/);
      const untrusting = new OAuth2Issuer({ tokenUrl: tlsServer.url, clientId: 'leash-client', clientSecret: SECRET });
      issuers.push(untrusting);
      const err = await rejection(untrusting.issue(request()));
      expect(err.code).toBe('LEASH_ERR_ISSUER_UPSTREAM');
      expect(err.message).toMatch(/unreachable: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT)/);
      expect(tlsServer.seen).toHaveLength(1); // the secret never went to the unverified peer
    } finally {
      await tlsServer.close();
    }
  });
});
