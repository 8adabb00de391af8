import { createServer } from 'node:https';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { AuthorityCallError } from '../../src/core/errors.js';
import { AuthorityClient } from '../../src/sidecar/credentials/authority-client.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';

/**
 * `authority.caFile` re-read before each call: a new bundle with a certificate is trusted
 * from the next call on; one with no certificate is refused (reported once) and the CA in
 * use stays; an unchanged one changes nothing.
 */

const HOUR = 3_600_000;
let oldCa: CertificateAuthority;
let newCa: CertificateAuthority;
let server: Upstream; // serves a certificate from the new CA only
let client: AuthorityClient;

beforeAll(async () => {
  oldCa = CertificateAuthority.generate('leash.local');
  newCa = CertificateAuthority.generate('leash.local');
  const tls = newCa.serverCertificate(['localhost'], ['127.0.0.1'], HOUR);
  server = await startUpstream((_req, res) => {
    res.writeHead(204);
    res.end();
  }, createServer({ cert: tls.certPem, key: tls.keyPem }));
});
afterAll(async () => {
  await server?.close();
});
afterEach(() => client?.close());

async function release(c: AuthorityClient): Promise<string> {
  try {
    await c.release('l1');
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(AuthorityCallError);
    return (err as AuthorityCallError).kind;
  }
}

describe('authority CA reload', () => {
  it('trusts a new bundle from the next call, reports it once', async () => {
    let bundle = oldCa.caPem;
    const seen: string[] = [];
    client = new AuthorityClient(new URL(server.url), oldCa.caPem, 1_000, { read: () => bundle, onChange: (o) => seen.push(o) });
    // The server's CA is not trusted yet: TLS fails (retryable), nothing changed.
    expect(await release(client)).toBe('retryable');
    expect(seen).toEqual([]);
    bundle = `${oldCa.caPem}\n${newCa.caPem}`;
    expect(await release(client)).toBe('ok');
    expect(await release(client)).toBe('ok');
    expect(seen).toEqual(['reloaded']);
  });

  it('refuses a bundle with no certificate, once, and keeps the CA in use', async () => {
    let bundle = newCa.caPem;
    let readFails = false;
    const seen: string[] = [];
    const read = () => {
      if (readFails) throw new Error('ENOENT');
      return bundle;
    };
    client = new AuthorityClient(new URL(server.url), newCa.caPem, 1_000, { read, onChange: (o) => seen.push(o) });
    expect(await release(client)).toBe('ok');
    bundle = 'not a certificate bundle';
    expect(await release(client)).toBe('ok');
    expect(await release(client)).toBe('ok');
    expect(seen).toEqual(['refused']);
    // A bundle that cannot be read (mid-swap) also leaves the CA in use, unreported.
    readFails = true;
    expect(await release(client)).toBe('ok');
    expect(seen).toEqual(['refused']);
  });

  it('without reload the configured CA alone is used', async () => {
    client = new AuthorityClient(new URL(server.url), oldCa.caPem, 1_000);
    expect(await release(client)).toBe('retryable');
  });
});
