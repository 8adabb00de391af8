import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createIssuer,
  ExecIssuer,
  ISSUER_ERROR_CODES,
  IssuerError,
  JwtIssuer,
  JwtKeyRing,
  OAuth2Issuer,
  StaticIssuer,
  type Issuer,
  type IssuerSpec,
} from '../../src/authority/issuers/index.js';
import { LeashError } from '../../src/core/errors.js';
import { rejection, request } from '../helpers/issuers-util.js';

const made: Issuer[] = [];
afterEach(async () => {
  for (const i of made.splice(0)) await i.close();
});
const keep = (i: Issuer): Issuer => (made.push(i), i);

describe('createIssuer', () => {
  it('builds each kind from its spec', async () => {
    const keys = await JwtKeyRing.generate();
    const specs: Array<[IssuerSpec, unknown]> = [
      [{ kind: 'jwt', audience: 'search-api', scopes: ['search:read'], ttlMs: 300_000 }, JwtIssuer],
      [{ kind: 'static', source: { env: 'OPENAI_KEY' }, ttlMs: 900_000 }, StaticIssuer],
      [{ kind: 'oauth2', tokenUrl: 'https://idp.example/oauth2/token', clientId: 'x', clientSecret: 's', scope: 'a' }, OAuth2Issuer],
      [{ kind: 'exec', command: ['/usr/local/bin/mint-token'], ttlMs: 1_800_000 }, ExecIssuer],
    ];
    for (const [spec, cls] of specs) {
      const issuer = keep(createIssuer(spec, { credential: spec.kind, keys, jwtIssuer: 'https://authority', env: { OPENAI_KEY: 'sk-1' } }));
      expect(issuer).toBeInstanceOf(cls as new (...a: never[]) => Issuer);
      expect(issuer.kind).toBe(spec.kind);
    }
  });

  it('jwt: iss from deps (or the spec), keys required', async () => {
    const keys = await JwtKeyRing.generate();
    const issuer = keep(createIssuer({ kind: 'jwt', audience: 'search-api' }, { credential: 'search', keys, jwtIssuer: 'https://authority' }));
    const { value } = await issuer.issue(request());
    const { payload } = await jwtVerify(value, createLocalJWKSet(keys.jwks()), { issuer: 'https://authority', audience: 'search-api' });
    expect(payload.sub).toBe(request().identity);
    const own = keep(createIssuer({ kind: 'jwt', audience: 'a', issuer: 'urn:own' }, { credential: 's', keys }));
    await jwtVerify((await own.issue(request())).value, createLocalJWKSet(keys.jwks()), { issuer: 'urn:own' });
    expect(() => createIssuer({ kind: 'jwt', audience: 'a' }, { credential: 'search', jwtIssuer: 'x' })).toThrow(/"search": no signing keys/);
    expect(() => createIssuer({ kind: 'jwt', audience: 'a' }, { credential: 'search', keys })).toThrow(/no issuer name/);
  });

  it('static env source reads the injected env; an unknown kind is a config error', async () => {
    const issuer = keep(createIssuer({ kind: 'static', source: { env: 'K' }, ttlMs: 60_000 }, { credential: 'openai', env: { K: 'sk-x' } }));
    expect((await issuer.issue(request())).value).toBe('sk-x');
    const err = (() => {
      try {
        createIssuer({ kind: 'vault' } as unknown as IssuerSpec, { credential: 'c' });
      } catch (e) {
        return e as IssuerError;
      }
      throw new Error('no throw');
    })();
    expect(err.code).toBe('LEASH_ERR_ISSUER_CONFIG');
    expect(err.message).toContain('"vault"');
  });
});

describe('IssuerError', () => {
  it('is a LeashError with a stable code from ISSUER_ERROR_CODES and its context', async () => {
    const err = await rejection(keep(createIssuer({ kind: 'static', source: { env: 'NOPE' }, ttlMs: 60_000 }, { credential: 'openai', env: {} })).issue(request()));
    expect(err).toBeInstanceOf(IssuerError);
    expect(err).toBeInstanceOf(LeashError);
    expect(err.name).toBe('IssuerError');
    expect(ISSUER_ERROR_CODES).toContain(err.code);
    expect(err.context).toMatchObject({ issuer: 'static', credential: 'test-cred' });
  });

  it('codes are unique and LEASH_ERR_ISSUER_-prefixed', () => {
    expect(new Set(ISSUER_ERROR_CODES).size).toBe(ISSUER_ERROR_CODES.length);
    for (const c of ISSUER_ERROR_CODES) expect(c).toMatch(/^LEASH_ERR_ISSUER_[A-Z]+$/);
  });
});
