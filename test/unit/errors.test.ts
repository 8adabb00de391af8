import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as errors from '../../src/core/errors.js';
import { ERROR_CODES, HTTP_ERROR_TYPES, LeashError, LeashHttpError } from '../../src/core/errors.js';

/** DESIGN §5: the agent-facing error types and their statuses (a contract: fixed names). */
const DESIGN_TYPES: Record<string, number> = {
  leash_no_route: 404,
  leash_denied: 403,
  leash_bad_request: 400,
  leash_credential_unavailable: 503,
  leash_upstream_unreachable: 502,
  leash_upstream_timeout: 504,
  leash_shutting_down: 503,
  leash_upstream_bad_response: 502,
};

/** Every LeashHttpError subclass, with the DESIGN type it must carry. */
const HTTP_SUBCLASSES: Record<string, { type: string; make: () => LeashHttpError }> = {
  NoRouteError: { type: 'leash_no_route', make: () => new errors.NoRouteError('m') },
  DeniedError: { type: 'leash_denied', make: () => new errors.DeniedError('m', { route: 'r' }) },
  BadRequestError: { type: 'leash_bad_request', make: () => new errors.BadRequestError('m') },
  CredentialUnavailableError: { type: 'leash_credential_unavailable', make: () => new errors.CredentialUnavailableError('m', { route: 'r' }) },
  UpstreamUnreachableError: { type: 'leash_upstream_unreachable', make: () => new errors.UpstreamUnreachableError('m', { route: 'r' }) },
  UpstreamTimeoutError: { type: 'leash_upstream_timeout', make: () => new errors.UpstreamTimeoutError('m', { route: 'r' }) },
  ShuttingDownError: { type: 'leash_shutting_down', make: () => new errors.ShuttingDownError() },
  UpstreamBadResponseError: { type: 'leash_upstream_bad_response', make: () => new errors.UpstreamBadResponseError('m', { route: 'r' }) },
};

const isClass = (v: unknown): v is abstract new (...a: never[]) => unknown => typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v));
const exportedClasses = Object.entries(errors).filter(([, v]) => isClass(v)) as [string, abstract new (...a: never[]) => unknown][];
const extendsFrom = (c: { prototype: unknown }, base: { prototype: object }) => c !== base && Object.prototype.isPrototypeOf.call(base.prototype, c.prototype as object);

const DOC = join(process.cwd(), 'docs/errors.md');
const doc = () => {
  expect(existsSync(DOC), 'docs/errors.md does not exist').toBe(true);
  return readFileSync(DOC, 'utf8');
};

describe('error types and statuses (DESIGN §5)', () => {
  it('HTTP_ERROR_TYPES is exactly the DESIGN §5 table', () => {
    expect({ ...HTTP_ERROR_TYPES }).toEqual(DESIGN_TYPES);
  });

  it('the DESIGN twin in docs/ lists the same types and statuses', () => {
    const path = join(process.cwd(), 'docs/DESIGN.md');
    expect(existsSync(path), 'docs/DESIGN.md missing').toBe(true);
    const text = readFileSync(path, 'utf8');
    const listed = Object.fromEntries([...text.matchAll(/`(leash_[a-z_]+)` (\d{3})/g)].map((m) => [m[1]!, Number(m[2])]));
    expect(listed).toEqual(DESIGN_TYPES);
  });

  it('every exported LeashHttpError subclass is known here and carries its DESIGN type and status', () => {
    const subclasses = exportedClasses.filter(([, c]) => extendsFrom(c, LeashHttpError)).map(([n]) => n);
    expect(subclasses.sort()).toEqual(Object.keys(HTTP_SUBCLASSES).sort());
    for (const [name, { type, make }] of Object.entries(HTTP_SUBCLASSES)) {
      const err = make();
      expect(err, name).toBeInstanceOf(LeashHttpError);
      expect(err, name).toBeInstanceOf(LeashError);
      expect(err, name).toBeInstanceOf(Error);
      expect(err.name).toBe(name);
      expect(err.type, name).toBe(type);
      expect(err.status, name).toBe(DESIGN_TYPES[type]);
      expect(ERROR_CODES as readonly string[], name).toContain(err.code);
    }
  });

  it('every agent-facing type has exactly one subclass and its own code', () => {
    const made = Object.values(HTTP_SUBCLASSES).map((s) => s.make());
    expect(new Set(made.map((e) => e.type))).toEqual(new Set(Object.keys(DESIGN_TYPES)));
    expect(new Set(made.map((e) => e.code)).size).toBe(made.length);
  });

  it('Retry-After on credential_unavailable and shutting_down, route carried through', () => {
    expect(new errors.CredentialUnavailableError('m').retryAfterSeconds).toBe(1);
    expect(new errors.ShuttingDownError().retryAfterSeconds).toBe(1);
    expect(new errors.CredentialUnavailableError('m', { retryAfterSeconds: 7 }).retryAfterSeconds).toBe(7);
    expect(new errors.DeniedError('m').retryAfterSeconds).toBeUndefined();
    expect(new errors.DeniedError('m', { route: 'openai' }).route).toBe('openai');
  });

  it('every LEASH_ERR_ code anywhere in src/ is listed in ERROR_CODES, and every listed code is used outside the list', () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith('.ts')) files.push(join(dir, e.name));
      }
    };
    walk(join(process.cwd(), 'src'));
    const uses = new Map<string, number>();
    for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/['"`](LEASH_ERR_[A-Z0-9_]+)['"`]/g)) uses.set(m[1]!, (uses.get(m[1]!) ?? 0) + 1);
    expect([...uses.keys()].filter((c) => !(ERROR_CODES as readonly string[]).includes(c))).toEqual([]);
    // Once in ERROR_CODES itself, at least once where an error is made.
    expect(ERROR_CODES.filter((c) => (uses.get(c) ?? 0) < 2)).toEqual([]);
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    // The operator-facing classes of DESIGN's CLI and config contracts.
    expect(new errors.ConfigError(['a: b']).code).toBe('LEASH_ERR_CONFIG');
    expect(new errors.CredentialSourceError('m').code).toBe('LEASH_ERR_CREDENTIAL_SOURCE');
    expect(new errors.UsageError('m').code).toBe('LEASH_ERR_USAGE');
  });

  it('ConfigError: one issue is the message; several are one per line', () => {
    expect(new errors.ConfigError(['a: b']).message).toBe('a: b');
    expect(new errors.ConfigError(['a: b', 'c: d']).message.split('\n').slice(1).map((l) => l.trim())).toEqual(['a: b', 'c: d']);
  });
});

describe('docs/errors.md documents every error', () => {
  it('every code in ERROR_CODES appears', () => {
    const text = doc();
    const missing = ERROR_CODES.filter((c) => !text.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });

  it('every DESIGN §5 type appears, in a table row with its status and code', () => {
    const text = doc();
    for (const [name, { type, make }] of Object.entries(HTTP_SUBCLASSES)) {
      const status = DESIGN_TYPES[type]!;
      const row = text.split('\n').find((l) => l.startsWith(`| \`${type}\` |`));
      expect(row, `${type} has no table row`).toBeDefined();
      const cells = row!.split('|').map((c) => c.trim());
      expect(cells, name).toContain(String(status));
      expect(cells, name).toContain(`\`${make().code}\``);
    }
  });

  it('every status the authority answers a code with is in its "Authority API" row', () => {
    const text = doc();
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(dir, e.name));
        else if (e.name.endsWith('.ts')) files.push(join(dir, e.name));
      }
    };
    walk(join(process.cwd(), 'src'));
    const made = new Map<string, Set<string>>();
    for (const f of files) {
      for (const m of readFileSync(f, 'utf8').matchAll(/AuthorityError\(\s*'(LEASH_ERR_[A-Z_]+)',\s*(\d{3})/g)) {
        made.set(m[1]!, (made.get(m[1]!) ?? new Set()).add(m[2]!));
      }
    }
    expect(made.size).toBeGreaterThan(5);
    const section = text.slice(text.indexOf('## Authority API'), text.indexOf('## Authority internals'));
    const wrong = [...made].flatMap(([code, statuses]) => {
      const row = section.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
      if (!row) return [`${code}: no row in "Authority API"`];
      const cell = row.split('|')[2]!;
      return [...statuses].filter((s) => !cell.includes(s)).map((s) => `${code}: answered ${s}, the row says ${cell.trim()}`);
    });
    expect(wrong, wrong.join('\n')).toEqual([]);
  });

  it('documents the response shape and the x-leash-error header', () => {
    const text = doc();
    expect(text).toContain('x-leash-error');
    expect(text).toMatch(/\{"error":\{"type":"leash_[a-z_]+","message":"[^"]*","route":/);
  });
});
