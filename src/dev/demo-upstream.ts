import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { httpJson } from '../core/http-json.js';

/**
 * The upstream of `leash dev`'s built-in example: a tiny API that accepts only leash
 * JWTs, verified against the authority's JWKS fetched over HTTPS (refetched when a
 * token names an unknown key), strictly (no clock tolerance). It answers who called and
 * how long the credential has left, so a new user sees it rotate.
 */
export interface DemoUpstream {
  url: string;
  close(): Promise<void>;
}

async function fetchJwks(jwksUrl: URL, caPem: string): Promise<JSONWebKeySet> {
  const res = await httpJson({ method: 'GET', url: jwksUrl, tls: { ca: caPem }, timeoutMs: 5_000, maxBodyBytes: 1024 * 1024 });
  return res.json() as JSONWebKeySet;
}

export async function startDemoUpstream(jwksUrl: URL, caPem: string, audience: string): Promise<DemoUpstream> {
  let jwks = await fetchJwks(jwksUrl, caPem);
  const verify = async (token: string) => {
    try {
      return await jwtVerify(token, createLocalJWKSet(jwks), { audience, clockTolerance: 0 });
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw err;
      jwks = await fetchJwks(jwksUrl, caPem); // a key rotated in: look again, once
      return jwtVerify(token, createLocalJWKSet(jwks), { audience, clockTolerance: 0 });
    }
  };
  const server: Server = createServer((req, res) => {
    const auth = req.headers.authorization ?? '';
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body, null, 2)}\n`);
    };
    if (!auth.startsWith('Bearer ')) return send(401, { verified: false, error: 'no bearer token: call me through leash' });
    verify(auth.slice(7)).then(
      ({ payload }) =>
        send(200, {
          verified: true,
          path: req.url,
          sub: payload.sub,
          scope: payload.scope,
          jti: payload.jti,
          expiresInSeconds: typeof payload.exp === 'number' ? payload.exp - Math.floor(Date.now() / 1000) : null,
          note: 'the agent never saw this token; leash leased it for this instance and rotates it at half its TTL',
        }),
      (err: Error) => send(401, { verified: false, error: err.message }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
