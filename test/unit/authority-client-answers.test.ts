import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/pki/ca.js';
import { AuthorityCallError } from '../../src/core/errors.js';
import { AuthorityClient } from '../../src/sidecar/credentials/authority-client.js';
import { sendJson, startAuthorityStandIn } from '../helpers/authority-stand-in.js';
import type { Upstream } from '../helpers/harness.js';

/**
 * What the sidecar accepts from the authority: an identity answer is taken only when every
 * field is well-formed (a wrong answer must never become the sidecar's identity), a 2xx is
 * the only success, and refusal details are shown only when code-shaped.
 */

const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const GOOD = { identity: 'spiffe://leash.local/join/a', certificate: CERT, ttlSeconds: 60 };

let ca: CertificateAuthority;
let server: Upstream;
let handler: (req: IncomingMessage, res: ServerResponse, body: string) => void;
let client: AuthorityClient;

beforeAll(async () => {
  ({ ca, server } = await startAuthorityStandIn((req, res, body) => handler(req, res, body)));
});
afterAll(async () => {
  await server?.close();
});
afterEach(() => client?.close());

const newClient = () => (client = new AuthorityClient(new URL(server.url), ca.caPem, 1_000));
const answer = (status: number, text: string) => (_req: IncomingMessage, res: ServerResponse) => sendJson(res, status, text);

async function failure(p: Promise<unknown>): Promise<AuthorityCallError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AuthorityCallError);
  return err as AuthorityCallError;
}

describe('identity answers', () => {
  it('accepts a well-formed identity answer', async () => {
    handler = answer(200, JSON.stringify(GOOD));
    await expect(newClient().renewIdentity('csr')).resolves.toMatchObject(GOOD);
  });

  // Each answer is wrong in exactly one field: each must be refused on its own.
  const bad: Array<[string, string]> = [
    ['a null body', 'null'],
    ['a non-string identity', JSON.stringify({ ...GOOD, identity: 7 })],
    ['an identity that is not a SPIFFE ID', JSON.stringify({ ...GOOD, identity: 'https://leash.local/join/a' })],
    ['no certificate', JSON.stringify({ ...GOOD, certificate: undefined })],
    ['a certificate with no PEM block', JSON.stringify({ ...GOOD, certificate: 'not a cert' })],
    ['a string TTL', JSON.stringify({ ...GOOD, ttlSeconds: '60' })],
    ['a zero TTL', JSON.stringify({ ...GOOD, ttlSeconds: 0 })],
  ];
  for (const [name, text] of bad) {
    it(`rejects ${name} as malformed`, async () => {
      handler = answer(200, text);
      const err = await failure(newClient().renewIdentity('csr'));
      expect(err.kind).toBe('malformed');
      expect(err.message).toContain('missing or bad fields');
    });
  }

  it('sends the legacy joinToken field only for a join token', async () => {
    const seen: unknown[] = [];
    handler = (req, res, body) => {
      seen.push(JSON.parse(body));
      answer(200, JSON.stringify(GOOD))(req, res);
    };
    const c = newClient();
    await c.bootstrap({ kind: 'join_token', token: 'leash_jt_abc' }, 'csr');
    await c.bootstrap({ kind: 'kubernetes', token: 'sa-token' }, 'csr');
    expect(seen[0]).toMatchObject({ joinToken: 'leash_jt_abc', attestation: { kind: 'join_token' }, csr: 'csr' });
    expect(seen[1]).not.toHaveProperty('joinToken');
    expect(seen[1]).toMatchObject({ attestation: { kind: 'kubernetes', token: 'sa-token' } });
  });
});

describe('statuses and error details', () => {
  it('a 300 answer is not success', async () => {
    handler = answer(300, JSON.stringify(GOOD));
    const err = await failure(newClient().renewIdentity('csr'));
    expect(err.kind).toBe('refused');
    expect(err.context?.status).toBe(300);
  });

  it('a 2xx that is not JSON is malformed and carries its status', async () => {
    handler = answer(200, '{not json');
    const err = await failure(newClient().renewIdentity('csr'));
    expect(err.kind).toBe('malformed');
    expect(err.message).toBe('authority answer is not JSON');
    expect(err.context?.status).toBe(200);
  });

  it('shows an error code only when the whole code is code-shaped', async () => {
    const c = newClient();
    handler = answer(403, JSON.stringify({ error: { code: 'LEASH_ERR_DENIED' } }));
    expect((await failure(c.renewIdentity('csr'))).message).toContain('(LEASH_ERR_DENIED)');
    handler = answer(403, JSON.stringify({ error: { code: 'x LEASH_ERR_DENIED' } }));
    expect((await failure(c.renewIdentity('csr'))).message).not.toContain('LEASH_ERR_DENIED');
    handler = answer(403, JSON.stringify({ error: { code: 'LEASH_ERR_DENIED x' } }));
    expect((await failure(c.renewIdentity('csr'))).message).not.toContain('LEASH_ERR_DENIED');
    // A non-string code would pass the pattern once coerced to a string: it is never shown.
    handler = answer(403, JSON.stringify({ error: { code: ['LEASH_ERR_DENIED'] } }));
    expect((await failure(c.renewIdentity('csr'))).message).not.toContain('LEASH_ERR_DENIED');
  });

  it('names only the first two path segments of the call', async () => {
    handler = answer(404, '{}');
    const err = await failure(newClient().release('lease-secret-id'));
    expect(err.message).toContain('DELETE /v1/leases');
    expect(err.message).not.toContain('lease-secret-id');
  });
});

describe('transport failures', () => {
  const big = 'x'.repeat(70 * 1024);
  for (const [status, kind] of [
    [200, 'malformed'],
    [300, 'retryable'],
    [503, 'retryable'],
  ] as const) {
    it(`too large an answer with status ${status} is ${kind}`, async () => {
      handler = answer(status, JSON.stringify({ pad: big }));
      const err = await failure(newClient().renewIdentity('csr'));
      expect(err.kind).toBe(kind);
      expect(err.context?.status).toBe(status);
      expect(err.message).toContain('larger than');
    });
  }

  it('an answer cut off mid-body is retryable, says so and keeps its status and cause', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      res.write('{"identity":');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const err = await failure(newClient().renewIdentity('csr'));
    expect(err.kind).toBe('retryable');
    // The transport's errno is named (ECONNRESET …), not a generic word.
    expect(err.message).toMatch(/^authority answer cut off \([A-Z][A-Z0-9_]+\)$/);
    expect(err.message).not.toContain('undefined');
    expect(err.context?.status).toBe(200);
    expect((err as { cause?: unknown }).cause).toBeInstanceOf(Error);
  });
});

describe('lease calls', () => {
  const LEASE = {
    lease: 'l-1',
    credential: 'api',
    secret: 'made-up-secret-value',
    ttlSeconds: 60,
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
  };

  it('asks for a TTL only when one is given', async () => {
    const seen: unknown[] = [];
    handler = (req, res, body) => {
      seen.push(JSON.parse(body));
      answer(500, '{}')(req, res);
    };
    const c = newClient();
    await failure(c.lease('api', 30));
    await failure(c.lease('api'));
    expect(seen[0]).toEqual({ credential: 'api', ttlSeconds: 30 });
    expect(seen[1]).toEqual({ credential: 'api' });
  });

  it('a refused lease answer names the credential asked for, never the answer', async () => {
    handler = answer(200, JSON.stringify({ ...LEASE, credential: 'other' }));
    const err = await failure(newClient().lease('api'));
    expect(err.kind).toBe('malformed');
    expect(err.message).toMatch(/^lease answer rejected: /);
    expect(err.context).toMatchObject({ credential: 'api' });
    expect(err.message).not.toContain('made-up-secret-value');
  });

  it('a refusal without a reason ends at the call; a 5xx without Retry-After carries none', async () => {
    const c = newClient();
    handler = answer(404, '{}');
    const refused = await failure(c.release('l-1'));
    expect(refused.message).toBe('authority answered 404 to DELETE /v1/leases');
    handler = answer(503, '{}');
    const busy = await failure(c.lease('api'));
    expect(busy.kind).toBe('retryable');
    expect(busy.retryAfterMs).toBeUndefined();
    expect(Object.keys(busy.context ?? {})).toEqual(['status']);
  });
});
