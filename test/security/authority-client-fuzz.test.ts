import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { AuthorityCallError, type AuthorityFailure } from '../../src/core/errors.js';
import { AuthorityClient, retryAfterHeaderMs } from '../../src/sidecar/credentials/authority-client.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { waitFor as poll } from '../helpers/wait.js';

/**
 * The sidecar's authority client against a hostile HTTPS server that holds a genuine
 * certificate from the CA the client trusts: oversized and endless answers, garbage,
 * silence, wrong statuses, and servers the client must not trust. Every failure must be
 * sorted (retryable / refused / malformed), fast, and must never carry the answer body
 * beyond a refusal's own message, made safe (authority-reason.ts): never a secret in it.
 */

const HOUR = 3_600_000;
const TIMEOUT_MS = 300;
/** Planted in every hostile body; it must never appear in an error the client raises. */
const MARKER = 'sk-live-BODYMARKER-7f3a9c';

let ca: CertificateAuthority;
let server: Upstream;
let handler: (req: IncomingMessage, res: ServerResponse) => void;
let client: AuthorityClient;

beforeAll(async () => {
  ca = CertificateAuthority.generate('leash.local');
  const tls = ca.serverCertificate(['localhost'], ['127.0.0.1'], HOUR);
  server = await startUpstream(
    (req, res) => handler(req, res),
    createServer({ cert: tls.certPem, key: tls.keyPem }),
  );
});

afterAll(async () => {
  await server?.close();
});

afterEach(() => {
  client?.close();
});

function newClient(url = server.url, caPem = ca.caPem): AuthorityClient {
  client = new AuthorityClient(new URL(url), caPem, TIMEOUT_MS);
  return client;
}

/** Run `fn`, expect an AuthorityCallError of `kind`, within 2 s; checks the body never leaks into it. */
async function expectFailure(fn: () => Promise<unknown>, kind: AuthorityFailure): Promise<{ err: AuthorityCallError; ms: number }> {
  const started = performance.now();
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  const ms = performance.now() - started;
  expect(caught, 'the call must fail').toBeInstanceOf(AuthorityCallError);
  const err = caught as AuthorityCallError;
  expect(err.kind, err.message).toBe(kind);
  expect(ms).toBeLessThan(2_000);
  const cause = (err as { cause?: unknown }).cause;
  for (const text of [err.message, String(err.stack), JSON.stringify(err), JSON.stringify(err.context ?? {}), String((cause as Error | undefined)?.message ?? '')]) {
    expect(text).not.toContain(MARKER);
    expect(text).not.toContain('BODYMARKER');
  }
  return { err, ms };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

describe('oversized answers', () => {
  it('a 2xx with a 32 MiB body (content-length) is refused as malformed without reading it all', async () => {
    const total = 32 * 1024 * 1024;
    let sent = 0;
    let closed = false;
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      chunk.write(`{"value":"${MARKER}","pad":"`, 0);
      const pump = () => {
        while (!closed && sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (!closed) res.end();
      };
      res.on('close', () => (closed = true));
      pump();
    };
    const { err } = await expectFailure(() => newClient().lease('search'), 'malformed');
    expect(err.message).toMatch(/larger than 65536/);
    await waitFor(() => closed);
    expect(sent).toBeLessThan(total / 2); // the client hung up long before the server could send it all
  });

  it('a 2xx endless stream is refused as malformed and the connection is cut', async () => {
    let sent = 0;
    let closed = false;
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.from(`{"value":"${MARKER}"}`.padEnd(16 * 1024, ' '));
      const pump = () => {
        while (!closed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      res.on('close', () => (closed = true));
      pump();
    };
    await expectFailure(() => newClient().lease('search'), 'malformed');
    await waitFor(() => closed);
    expect(sent).toBeLessThan(16 * 1024 * 1024); // stopped by the client, not by running out of stream
  });

  it('an oversized error answer (5xx endless) is retryable, not buffered', async () => {
    let closed = false;
    handler = (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      const chunk = Buffer.from(MARKER.repeat(1024));
      const pump = () => {
        while (!closed) if (!res.write(chunk)) return void res.once('drain', pump);
      };
      res.on('close', () => (closed = true));
      pump();
    };
    await expectFailure(() => newClient().lease('search'), 'retryable');
    await waitFor(() => closed);
  });
});

describe('garbage answers', () => {
  it.each([
    ['non-JSON text', `<html>${MARKER}</html>`],
    ['truncated JSON', `{"lease":"x","value":"${MARKER}"`],
    ['JSON of the wrong shape', JSON.stringify({ lease: 'x', credential: 'search', value: MARKER })],
    ['JSON array', JSON.stringify([MARKER])],
    ['JSON string', JSON.stringify(MARKER)],
    ['empty body', ''],
  ])('a 2xx with %s is malformed', async (_label, body) => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    };
    await expectFailure(() => newClient().lease('search'), 'malformed');
  });

  it('a 2xx lease for another credential, or with an unsigned JWT, is malformed', async () => {
    const { createHash } = await import('node:crypto');
    const lease = (credential: string, value: string) => ({
      lease: 'L1',
      credential,
      value,
      fingerprint: `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 12)}`,
      version: 'v1',
      issuedAt: new Date(0).toISOString(),
      expiresAt: new Date(300_000).toISOString(),
      ttlSeconds: 300,
    });
    handler = (_req, res) => json(res, 200, lease('other', MARKER));
    await expectFailure(() => newClient().lease('search'), 'malformed');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"x"}').toString('base64url')}.`;
    handler = (_req, res) => json(res, 200, lease('search', none));
    await expectFailure(() => newClient().lease('search'), 'malformed');
    // Control: the same server answering a well-formed lease is accepted, so the refusals above are real.
    handler = (_req, res) => json(res, 200, lease('search', MARKER));
    expect((await newClient().lease('search')).value).toBe(MARKER);
  });

  it('a 2xx identity answer of the wrong shape is malformed (bootstrap)', async () => {
    handler = (_req, res) => json(res, 200, { identity: 'https://evil', certificate: MARKER, ttlSeconds: 60 });
    await expectFailure(() => newClient().bootstrap({ kind: 'join_token', token: 'leash_jt_x' }, 'csr'), 'malformed');
    handler = (_req, res) => json(res, 200, { identity: 'spiffe://leash.local/x', certificate: '-----BEGIN CERTIFICATE-----', ttlSeconds: -1 });
    await expectFailure(() => newClient().bootstrap({ kind: 'join_token', token: 'leash_jt_x' }, 'csr'), 'malformed');
  });

  it('a server that speaks TLS but not HTTP is retryable', async () => {
    const tls = ca.serverCertificate([], ['127.0.0.1'], HOUR);
    const raw: TlsServer = createTlsServer({ cert: tls.certPem, key: tls.keyPem }, (socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.end(`NOT HTTP ${MARKER}\r\n\r\n`));
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    try {
      await expectFailure(() => newClient(`https://127.0.0.1:${(raw.address() as AddressInfo).port}`).lease('search'), 'retryable');
    } finally {
      raw.close();
    }
  });

  it('a connection cut in the middle of a 2xx answer is retryable', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 10_000 });
      res.write(`{"value":"${MARKER}",`);
      setTimeout(() => res.socket?.destroy(), 20);
    };
    await expectFailure(() => newClient().lease('search'), 'retryable');
  });
});

describe('statuses', () => {
  it.each([500, 502, 503, 504, 429, 408])('%i is retryable, with the status', async (status) => {
    handler = (_req, res) => json(res, status, { error: { code: 'LEASH_ERR_X', message: `boom ${MARKER}` }, value: MARKER });
    const { err } = await expectFailure(() => newClient().lease('search'), 'retryable');
    expect(err.status).toBe(status);
  });

  it("a retryable answer's Retry-After (delta-seconds) is carried in ms; a refusal's, or a date, is not", async () => {
    const answer = (status: number, retryAfter: string) => (_req: IncomingMessage, res: ServerResponse) => {
      res.setHeader('retry-after', retryAfter);
      json(res, status, { error: { code: 'LEASH_ERR_RATE_LIMITED', message: 'slow down' } });
    };
    handler = answer(429, '7');
    expect((await expectFailure(() => newClient().lease('search'), 'retryable')).err.retryAfterMs).toBe(7_000);
    handler = answer(503, 'Wed, 21 Oct 2026 07:28:00 GMT');
    expect((await expectFailure(() => newClient().lease('search'), 'retryable')).err.retryAfterMs).toBeUndefined();
    handler = answer(401, '7');
    expect((await expectFailure(() => newClient().lease('search'), 'refused')).err.retryAfterMs).toBeUndefined();
  });

  it.each(['', '-1', '1.5', '1e3', ' ', '9999999999', 'abc'])('Retry-After %j is not delta-seconds: absent', (value) => {
    expect(retryAfterHeaderMs(value)).toBeUndefined();
  });

  it('Retry-After parsing: digits, spaces around them', () => {
    expect(retryAfterHeaderMs('10')).toBe(10_000);
    expect(retryAfterHeaderMs(' 3 ')).toBe(3_000);
    expect(retryAfterHeaderMs(['1', '2'])).toBeUndefined();
    expect(retryAfterHeaderMs(undefined)).toBeUndefined();
  });

  it.each([401, 403, 404, 400])('%i is refused, with the status', async (status) => {
    handler = (_req, res) => json(res, status, { error: { code: 'LEASH_ERR_POLICY_DENIED', message: `no ${MARKER}` } });
    const { err } = await expectFailure(() => newClient().lease('search'), 'refused');
    expect(err.status).toBe(status);
    expect(err.message).toContain('LEASH_ERR_POLICY_DENIED'); // a code-shaped code is shown
  });

  it("a refusal carries the authority's own reason, made safe; a 5xx's message is never carried", async () => {
    handler = (_req, res) => json(res, 401, { error: { code: 'LEASH_ERR_UNAUTHENTICATED', message: 'join token is invalid, expired or already used\r\nforged' } });
    const { err } = await expectFailure(() => newClient().lease('search'), 'refused');
    expect(err.message).toBe('authority answered 401 (LEASH_ERR_UNAUTHENTICATED) to POST /v1/leases: join token is invalid, expired or already used forged');
    handler = (_req, res) => json(res, 503, { error: { code: 'LEASH_ERR_STORE', message: 'redis down' } });
    const { err: retry } = await expectFailure(() => newClient().lease('search'), 'retryable');
    expect(retry.message).not.toContain('redis down');
  });

  it('a non-JSON error body, or an error "code" that is not a code, is never echoed', async () => {
    handler = (_req, res) => {
      res.writeHead(403, { 'content-type': 'text/plain' });
      res.end(`forbidden: ${MARKER}`);
    };
    await expectFailure(() => newClient().lease('search'), 'refused');
    for (const code of [MARKER, `${MARKER}\r\nx`, { nested: MARKER }, [MARKER]]) {
      handler = (_req, res) => json(res, 503, { error: { code, message: MARKER } });
      await expectFailure(() => newClient().lease('search'), 'retryable');
    }
  });
});

describe('silence and untrusted servers', () => {
  it('a server that never answers: retryable after the client timeout', async () => {
    const held: ServerResponse[] = [];
    handler = (_req, res) => void held.push(res); // never answers
    const { err, ms } = await expectFailure(() => newClient().lease('search'), 'retryable');
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(err.message).toMatch(/ETIMEDOUT|timeout/i);
    for (const r of held) r.socket?.destroy();
  });

  it('a server that sends headers then stalls the body: retryable after the timeout, never hangs', async () => {
    const held: ServerResponse[] = [];
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      res.write(`{"value":"${MARKER}"`);
      held.push(res);
    };
    const { ms } = await expectFailure(() => newClient().lease('search'), 'retryable');
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    for (const r of held) r.socket?.destroy();
  });

  it('a server whose certificate is from another CA: retryable TLS failure, never accepted, never sent the request', async () => {
    const foreign = CertificateAuthority.generate('leash.local'); // same names, different key
    const tls = foreign.serverCertificate(['localhost'], ['127.0.0.1'], HOUR);
    let seen = 0;
    const evil = await startUpstream(
      (_req, res) => {
        seen++;
        json(res, 200, { value: MARKER });
      },
      createServer({ cert: tls.certPem, key: tls.keyPem }),
    );
    try {
      const { err } = await expectFailure(() => newClient(evil.url).lease('search'), 'retryable');
      expect(err.message).toMatch(/unreachable/);
      expect(seen).toBe(0);
      await expectFailure(() => newClient(evil.url).bootstrap({ kind: 'join_token', token: 'leash_jt_secret-join-token' }, 'csr'), 'retryable');
      expect(seen).toBe(0); // the join token never reached it
    } finally {
      await evil.close();
    }
  });

  it('a server with the right CA but a certificate for another host name: retryable, never sent the request', async () => {
    const tls = ca.serverCertificate(['authority.example'], [], HOUR);
    let seen = 0;
    const other = await startUpstream(
      (_req, res) => {
        seen++;
        json(res, 200, {});
      },
      createServer({ cert: tls.certPem, key: tls.keyPem }),
    );
    try {
      await expectFailure(() => newClient(other.url).lease('search'), 'retryable');
      expect(seen).toBe(0);
    } finally {
      await other.close();
    }
  });

  it('a closed port is retryable', async () => {
    const probe = await startUpstream((_q, s) => s.end());
    const url = probe.url.replace('http:', 'https:');
    await probe.close();
    await expectFailure(() => newClient(url).lease('search'), 'retryable');
  });

  it('after every hostile answer the client still works against an honest answer', async () => {
    // Counted by the handlers, for this lease only: a request an earlier case's client sent
    // late (on a loaded machine) must not count.
    let refused = 0;
    let honest = 0;
    handler = (req, res) => {
      if (req.url?.includes('L1')) refused++;
      json(res, 404, { error: { code: 'LEASH_ERR_NOT_FOUND', message: 'no such lease' } });
    };
    await expectFailure(() => newClient().release('L1'), 'refused');
    handler = (req, res) => {
      if (req.url?.includes('L1')) honest++;
      json(res, 200, { released: true });
    };
    await expect(newClient().release('L1')).resolves.toBeUndefined();
    expect([refused, honest]).toEqual([1, 1]);
  });
});

async function waitFor(cond: () => boolean, ms = 2_000): Promise<void> {
  await poll(cond, { timeoutMs: ms, intervalMs: 10 });
}
