// A small internal API that accepts only leash JWTs (docs/verify.md).
//   LEASH_JWKS_URL   https://<authority>/.well-known/jwks.json          (required)
//   LEASH_CA_FILE    PEM of the authority's CA                          (optional: system roots)
//   LEASH_AUDIENCE   this service's name in the authority's credentials (default inventory-api)
//   LEASH_ISSUER     expected iss                                       (optional)
//   LEASH_SCOPES     scopes every call needs, space-separated           (default inventory:read)
//   LEASH_REDIS_URL  the authority's Redis, for revocations             (optional; strongly advised)
//   LEASH_PREFIX     the authority's keyPrefix                          (default leash:)
//   PORT             default 3000
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createVerifier, httpStatusOf, VerifyError } from '../../dist/src/verify/index.js'; // or 'leash/verify'

const env = process.env;
if (!env.LEASH_JWKS_URL) throw new Error('set LEASH_JWKS_URL (see README.md)');
const log = { warn: (obj, msg) => console.warn(JSON.stringify({ level: 'warn', msg, ...obj })) };

const verifier = createVerifier({
  jwksUrl: env.LEASH_JWKS_URL,
  ca: env.LEASH_CA_FILE ? readFileSync(env.LEASH_CA_FILE, 'utf8') : undefined,
  audience: env.LEASH_AUDIENCE ?? 'inventory-api',
  issuer: env.LEASH_ISSUER || undefined,
  requiredScopes: (env.LEASH_SCOPES ?? 'inventory:read').split(' ').filter(Boolean),
  revocations: env.LEASH_REDIS_URL ? { redis: env.LEASH_REDIS_URL, prefix: env.LEASH_PREFIX } : undefined,
  logger: log,
});

const send = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json', ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}) });
  res.end(`${JSON.stringify(body)}\n`);
};

const server = createServer(async (req, res) => {
  if (req.url === '/healthz') return send(res, verifier.channelUp ? 200 : 503, { revocationChannel: verifier.channelUp });
  const m = /^Bearer ([^\s]+)$/.exec(req.headers.authorization ?? '');
  if (!m) return send(res, 401, { error: 'LEASH_VERIFY_INVALID', message: 'no bearer token' });
  try {
    // Per-route scopes on top of the required ones: writes need inventory:write.
    const scopes = req.method === 'GET' ? [] : ['inventory:write'];
    const token = await verifier.verify(m[1], { scopes });
    send(res, 200, { ok: true, caller: token.sub, lease: token.jti, credential: token.credential, scopes: token.scopes, expiresInSeconds: token.exp - Math.floor(Date.now() / 1000) });
  } catch (err) {
    if (!(err instanceof VerifyError)) return send(res, 500, { error: 'internal' });
    send(res, httpStatusOf(err.code), { error: err.code, message: err.message });
  }
});

await verifier.ready(); // JWKS loaded, revocation channel up: only now accept traffic
server.listen(Number(env.PORT ?? 3000), '127.0.0.1', () => console.log(`verify-service on http://127.0.0.1:${server.address().port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => server.close(() => verifier.close().then(() => process.exit(0))));
