import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from './harness.js';

/**
 * An HTTPS server on port 0 standing in for the authority's API, for the sidecar's
 * authority-client tests: a fresh CA (`ca.caPem` is what the client trusts), a certificate
 * for 127.0.0.1, and each request's body read whole before `handler` sees it.
 */
export async function startAuthorityStandIn(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ ca: CertificateAuthority; server: Upstream }> {
  const ca = CertificateAuthority.generate('leash.local');
  const tls = ca.serverCertificate(['localhost'], ['127.0.0.1'], 3_600_000);
  const server = await startUpstream((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => handler(req, res, body));
  }, createServer({ cert: tls.certPem, key: tls.keyPem }));
  return { ca, server };
}

/** Answers `text` (JSON) with `status` and an exact Content-Length. */
export function sendJson(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
