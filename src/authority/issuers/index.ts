import { IssuerError } from './errors.js';
import { ExecIssuer, type ExecIssuerOptions } from './exec.js';
import { JwtIssuer, JwtKeyRing } from './jwt.js';
import { OAuth2Issuer, type OAuth2IssuerOptions } from './oauth2.js';
import { StaticIssuer, type StaticIssuerOptions } from './static.js';
import type { Issuer } from './types.js';

export type { IssueRequest, Issued, Issuer } from './types.js';
export { IssuerError, ISSUER_ERROR_CODES, type IssuerErrorCode } from './errors.js';
export { JwtIssuer, JwtKeyRing, type JwtIssuerOptions, type JwtKeyRingOptions, type PublicJwk } from './jwt.js';
export { StaticIssuer, type StaticIssuerOptions, type StaticSource } from './static.js';
export { OAuth2Issuer, type OAuth2IssuerOptions, type SecretValue } from './oauth2.js';
export { ExecIssuer, type ExecIssuerOptions } from './exec.js';

/**
 * One configured credential (authority config `credentials.<name>`), typed. The config
 * layer maps YAML to it: durations to ms, `{ file }`/`{ env }` secret references to a
 * resolved `SecretValue`. Fields left out take the issuer's defaults.
 */
export type IssuerSpec =
  | {
      kind: 'jwt';
      /** `aud` claim. */
      audience: string | string[];
      scopes?: string[];
      ttlMs?: number;
      /** `iss` claim; default deps.jwtIssuer (the authority's own issuer name). */
      issuer?: string;
    }
  /** Each other kind takes its issuer's own options; what comes from deps is left out. */
  | ({ kind: 'static' } & Omit<StaticIssuerOptions, 'env' | 'credential' | 'onChange'>)
  | ({ kind: 'oauth2' } & Omit<OAuth2IssuerOptions, 'credential'>)
  | ({ kind: 'exec' } & Omit<ExecIssuerOptions, 'env' | 'credential'>);

export type IssuerKind = IssuerSpec['kind'];

export interface IssuerDeps {
  /** The credential's name (`credentials.<name>`), for error messages. */
  credential: string;
  /** The authority's signing keys (`signing.keysDir`, or generated); needed by jwt. */
  keys?: JwtKeyRing;
  /** The authority's `iss` for jwt credentials without their own `issuer`. */
  jwtIssuer?: string;
  /** The injected environment: static `{ env }` sources, exec PATH/passEnv. */
  env?: Readonly<Record<string, string | undefined>>;
  /** static file sources: the value changed (new version) or vanished (undefined). */
  onChange?: (version: string | undefined) => void;
}

/** Build the issuer for one configured credential. Throws IssuerError LEASH_ERR_ISSUER_CONFIG. */
export function createIssuer(spec: IssuerSpec, deps: IssuerDeps): Issuer {
  const { credential } = deps;
  switch (spec.kind) {
    case 'jwt': {
      const issuer = spec.issuer ?? deps.jwtIssuer;
      if (!deps.keys || !issuer) {
        const missing = !deps.keys ? 'signing keys' : 'issuer name (iss)';
        throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `jwt issuer for credential "${credential}": no ${missing} given`, { credential });
      }
      return new JwtIssuer({ issuer, audience: spec.audience, scopes: spec.scopes, keys: deps.keys, ttlMs: spec.ttlMs, credential });
    }
    case 'static':
      return new StaticIssuer({ ...spec, env: deps.env, credential, onChange: deps.onChange });
    case 'oauth2':
      return new OAuth2Issuer({ ...spec, credential });
    case 'exec':
      return new ExecIssuer({ ...spec, env: deps.env, credential });
    default: {
      const never: never = spec;
      throw new IssuerError('LEASH_ERR_ISSUER_CONFIG', `credential "${credential}": unknown issuer kind ${JSON.stringify((never as { kind: unknown }).kind)}`, { credential });
    }
  }
}
