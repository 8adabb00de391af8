import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema, type SidecarConfig } from '../../src/config/sidecar.js';
import { ConfigError } from '../../src/core/errors.js';
import { runLeash } from '../helpers/spawn.js';

/** Config validation: every message names the key path and the reason (DESIGN §4), never a secret. */
const route = (over: Record<string, unknown> = {}) => ({
  upstream: 'https://api.openai.com',
  credential: { env: 'OPENAI_KEY' },
  inject: { header: 'authorization', format: 'Bearer {{credential}}' },
  allow: ['GET /v1/models'],
  ...over,
});
const doc = (over: Record<string, unknown> = {}, routeOver: Record<string, unknown> = {}) => JSON.stringify({ routes: { openai: route(routeOver) }, ...over });

function problems(text: string, env: Record<string, string> = {}): string[] {
  try {
    parseConfig(sidecarSchema, text, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.code).toBe('LEASH_ERR_CONFIG');
    return [...e.issues];
  }
  throw new Error('expected a ConfigError');
}

describe('config: valid documents', () => {
  it('YAML with defaults filled in', () => {
    const c = parseConfig(
      sidecarSchema,
      `
routes:
  openai:
    upstream: https://api.openai.com/v1base/
    credential: { file: /secrets/openai }
    inject: { header: Authorization, format: "Bearer {{credential}}" }
    allow: ["POST /v1/chat/completions", "GET /v1/models/*"]
`,
      {},
    );
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.admin).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(c.shutdown.grace).toBe(30_000);
    const r = c.routes.openai!;
    expect(r.upstream.href).toBe('https://api.openai.com/v1base/');
    expect(r.inject).toEqual({ header: 'authorization', format: 'Bearer {{credential}}' });
    expect(r.allow.map((a) => a.text)).toEqual(['POST /v1/chat/completions', 'GET /v1/models/*']);
    expect(r.timeouts).toEqual({ connect: 10_000, idle: 600_000 });
    expect(r.maxSockets).toBe(256);
    expect(r.stripHeaders).toEqual([]);
  });

  it('the default idle timeout outlasts the vendor SDKs\' own request timeout', () => {
    // A non-streaming answer sends nothing until it is done: OpenAI's reasoning models and
    // Claude with a large max_tokens take several minutes, which the SDKs wait for (10 min,
    // the Python ones too). A route that cut them first answered 504, which the SDKs retry:
    // the same minutes of generation billed again, and a failure at the end.
    const c = parseConfig(sidecarSchema, doc(), {});
    for (const sdkTimeout of [OpenAI.DEFAULT_TIMEOUT, Anthropic.DEFAULT_TIMEOUT, 600_000]) {
      expect(c.routes.openai!.timeouts.idle).toBeGreaterThanOrEqual(sdkTimeout);
    }
  });

  it('JSON is accepted', () => {
    const c = parseConfig(sidecarSchema, doc({ listen: '[::1]:0' }), { OPENAI_KEY: 'x' });
    expect(c.listen).toEqual({ host: '::1', port: 0 });
    expect(c.routes.openai!.upstream.origin).toBe('https://api.openai.com');
  });

  it('durations in every unit', () => {
    const c = parseConfig(sidecarSchema, doc({ shutdown: { grace: '90s' } }, { timeouts: { connect: '250ms', idle: '15m' } }), {});
    expect(c.shutdown.grace).toBe(90_000);
    expect(c.routes.openai!.timeouts).toEqual({ connect: 250, idle: 900_000 });
    expect(parseConfig(sidecarSchema, doc({ shutdown: { grace: '1h' } }), {}).shutdown.grace).toBe(3_600_000);
  });

  it('the parsed config is deeply frozen', () => {
    const c: SidecarConfig = parseConfig(sidecarSchema, doc({}, { stripHeaders: ['x-a'] }), {});
    const r = c.routes.openai!;
    for (const o of [c, c.listen, c.routes, r, r.inject, r.allow, r.allow[0], r.allow[0]!.segments, r.stripHeaders, r.timeouts, r.credential, c.shutdown]) {
      expect(Object.isFrozen(o)).toBe(true);
    }
    expect(() => {
      (c as { listen: unknown }).listen = { host: '0.0.0.0', port: 1 };
    }).toThrow(TypeError);
    expect(() => {
      (r.allow as unknown[]).push('x');
    }).toThrow(TypeError);
    expect(() => {
      (r.inject as { format: string }).format = 'x';
    }).toThrow(TypeError);
    expect(() => {
      (c.routes as Record<string, unknown>).evil = r;
    }).toThrow(TypeError);
  });
});

describe('config: errors name the key path and the bad value', () => {
  it('upstream that is not an http(s) URL (the DESIGN example, verbatim)', () => {
    expect(problems(doc({}, { upstream: 'api.openai.com' }))).toEqual(['routes.openai.upstream: must be an http(s) URL (got "api.openai.com")']);
  });

  it.each([
    ['ftp://x.example', 'must be an http(s) URL'],
    ['https://user:pw@x.example', 'must not carry user:password'],
    ['https://x.example/?q=1', 'must not have a query or fragment'],
    ['https://x.example/#frag', 'must not have a query or fragment'],
  ])('upstream %j', (upstream, reason) => {
    const p = problems(doc({}, { upstream }));
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(new RegExp(`^routes\\.openai\\.upstream: ${reason.replace(/[()]/g, '\\$&')}`));
  });

  it('a user:password upstream is not echoed', () => {
    const p = problems(doc({}, { upstream: 'https://svc:hunter2-secret@x.example' }));
    expect(p.join('\n')).toMatch(/^routes\.openai\.upstream: must not carry user:password/);
    // It names the problem; the password it holds is a secret written inline.
    expect(p.join('\n')).not.toContain('hunter2-secret');
  });

  it('unknown keys, at the root and inside a route', () => {
    const p = problems(JSON.stringify({ routes: { openai: { ...route(), alow: [] } }, lissen: 'x' }));
    // Each named with the closest known key; the value under a misspelt top-level key is
    // still checked as if spelt right, and the key it stands for is not also "required".
    expect(p).toContain('lissen: unknown key; did you mean "listen"?');
    expect(p).toContain('lissen: must be "host:port", e.g. "127.0.0.1:8080" (got "x")');
    expect(p).toContain('routes.openai.alow: unknown key; did you mean "allow"?');
    expect(p.some((l) => l.startsWith('routes.openai.allow'))).toBe(false);
  });

  it('bad durations', () => {
    expect(problems(doc({}, { timeouts: { connect: '10 parsecs' } }))).toEqual([
      'routes.openai.timeouts.connect: must be a duration like "90s", "15m" or "1h" (got "10 parsecs")',
    ]);
    expect(problems(doc({ shutdown: { grace: 5 } }))).toEqual(['shutdown.grace: must be a duration like "90s", "15m" or "1h" (got 5)']);
    expect(problems(doc({ shutdown: { grace: '-5s' } }))[0]).toMatch(/^shutdown\.grace: must be a duration/);
  });

  it('bad allow rules, with the index in the path', () => {
    const p = problems(doc({}, { allow: ['GET /v1/models', 'GET v1/models', 'get /x', 'GET /**/x'] }));
    expect(p).toHaveLength(3);
    expect(p[0]).toMatch(/^routes\.openai\.allow\[1\]: path must start with "\/" .*"GET v1\/models"/);
    expect(p[1]).toMatch(/^routes\.openai\.allow\[2\]: method must be upper-case letters or "\*" .*"get \/x"/);
    expect(p[2]).toMatch(/^routes\.openai\.allow\[3\]: "\*\*" may only be the last segment/);
    expect(problems(doc({}, { allow: 'GET /x' }))[0]).toMatch(/^routes\.openai\.allow: must be a list of "METHOD \/path" rules/);
  });

  it('bad listen address, route name, inject and header names', () => {
    expect(problems(doc({ listen: 'localhost' }))).toEqual(['listen: must be "host:port", e.g. "127.0.0.1:8080" (got "localhost")']);
    expect(problems(doc({ listen: '127.0.0.1:70000' }))[0]).toMatch(/^listen: must be "host:port"/);
    const name = problems(JSON.stringify({ routes: { OpenAI: route() } }));
    expect(name).toHaveLength(1);
    expect(name[0]).toMatch(/^routes(\.OpenAI)?: .*OpenAI.*must be lower-case/);
    expect(name[0]).not.toContain('api.openai.com'); // the key is at fault, not the route under it
    expect(problems(doc({}, { inject: { header: 'host', format: '{{credential}}' } }))[0]).toMatch(/^routes\.openai\.inject\.header: is reserved/);
    expect(problems(doc({}, { inject: { header: 'x-key', format: 'Bearer' } }))[0]).toMatch(/^routes\.openai\.inject\.format: must contain "\{\{credential\}\}" exactly once/);
    expect(problems(doc({}, { inject: { header: 'x-key', format: '{{credential}}\r\nX-Evil: 1' } }))[0]).toMatch(/^routes\.openai\.inject\.format: must not contain CR, LF or NUL/);
    expect(problems(doc({}, { stripHeaders: ['bad header'] }))[0]).toMatch(/^routes\.openai\.stripHeaders\[0\]: must be an HTTP header name/);
    expect(problems(JSON.stringify({ routes: {} }))).toEqual(['routes: must define at least one route (got {})']);
  });

  it('reports every problem at once', () => {
    const p = problems(doc({ listen: 'x', lissen: 1 }, { upstream: 'nope', maxSockets: 0 }));
    expect(p.length).toBeGreaterThanOrEqual(4);
  });

  it('a string credential (a lease name) without an authority section', () => {
    expect(problems(doc({}, { credential: 'openai' }))).toEqual([
      'routes.openai.credential: a lease name needs an authority section; use { file: PATH } or { env: NAME } for a local secret',
    ]);
  });

  it('a value under a credential/token/secret/password/key key is never echoed', () => {
    const leak = 'sk-live-DO-NOT-ECHO-0123456789';
    const cases = [
      doc({}, { credential: { value: leak } }),
      doc({}, { credential: { file: leak, env: leak } }),
      doc({}, { credential: 42 }),
      JSON.stringify({ routes: { openai: route() }, token: leak }),
      JSON.stringify({ routes: { openai: route() }, apiKey: leak }),
      JSON.stringify({ routes: { openai: route({ secret: leak, password: leak }) } }),
      JSON.stringify({ routes: { openai: route({ credential: leak }) } }),
      // A format without {{credential}} is usually the secret written inline.
      doc({}, { inject: { header: 'authorization', format: `Bearer ${leak}` } }),
      doc({}, { inject: { header: 'authorization', format: `Bearer ${leak}`, extra: 1 } }),
      doc({}, { inject: { format: leak } }),
      // Sensitive keys inside an echoed object or list.
      JSON.stringify({ routes: { openai: [{ credential: leak, token: leak }] } }),
    ];
    for (const text of cases) {
      const p = problems(text);
      expect(p.length, text).toBeGreaterThan(0);
      expect(p.join('\n'), text).not.toContain(leak);
      expect(p.join('\n'), text).not.toContain('DO-NOT-ECHO');
    }
    expect(problems(doc({}, { credential: { value: leak } }))[0]).toMatch(/^routes\.openai\.credential: /);
  });

  it('a long bad value is echoed truncated', () => {
    const p = problems(doc({}, { upstream: `x${'a'.repeat(500)}` }));
    expect(p[0]!.length).toBeLessThan(200);
  });
});

describe('config: ${VAR} expansion', () => {
  it('${VAR} and ${VAR:-default}', () => {
    const text = doc({ instance: { id: '${POD:-pod-default}' }, listen: '${HOST}:${PORT:-8181}' }, { upstream: '${UP}' });
    const c = parseConfig(sidecarSchema, text, { HOST: '127.0.0.2', UP: 'https://up.example/v1' });
    expect(c.instance.id).toBe('pod-default');
    expect(c.listen).toEqual({ host: '127.0.0.2', port: 8181 });
    expect(c.routes.openai!.upstream.href).toBe('https://up.example/v1');
    expect(parseConfig(sidecarSchema, text, { HOST: 'h', UP: 'https://u.example', POD: 'p-1', PORT: '1' }).instance.id).toBe('p-1');
  });

  it('an empty default and an empty variable are allowed', () => {
    expect(parseConfig(sidecarSchema, doc({ instance: { id: '${POD_NAME:-}' } }), {}).instance.id).toBe('');
    expect(parseConfig(sidecarSchema, doc({ instance: { id: '${POD_NAME}' } }), { POD_NAME: '' }).instance.id).toBe('');
  });

  it('$${ is a literal ${', () => {
    expect(parseConfig(sidecarSchema, doc({ instance: { id: 'a$${B}c' } }), {}).instance.id).toBe('a${B}c');
    expect(parseConfig(sidecarSchema, doc({ instance: { id: '$${B:-x}' } }), { B: 'no' }).instance.id).toBe('${B:-x}');
  });

  it('expands inside lists and nested objects, never into structure', () => {
    const c = parseConfig(sidecarSchema, doc({}, { allow: ['GET /${VER}/models'] }), { VER: 'v1' });
    expect(c.routes.openai!.allow[0]!.segments).toEqual(['v1', 'models']);
    // A variable holding YAML stays a string.
    const p = problems(doc({}, { upstream: '${UP}' }), { UP: '{ evil: true }' });
    expect(p[0]).toBe('routes.openai.upstream: must be an http(s) URL (got "{ evil: true }")');
  });

  it('an unset variable is an error naming the key path (every one at once)', () => {
    expect(problems(doc({ listen: '${LISTEN}' }, { upstream: '${UPSTREAM_URL}' })).sort()).toEqual([
      'listen: environment variable LISTEN is not set (use ${LISTEN:-default} for a default)',
      'routes.openai.upstream: environment variable UPSTREAM_URL is not set (use ${UPSTREAM_URL:-default} for a default)',
    ]);
    expect(problems(doc({}, { allow: ['GET /${NOPE}'] }))).toEqual(['routes.openai.allow[0]: environment variable NOPE is not set (use ${NOPE:-default} for a default)']);
  });
});

describe('config: syntax', () => {
  it('a YAML syntax error is a ConfigError naming the source', () => {
    const p = problems('routes: [unclosed\n  foo: : bar');
    expect(p.length).toBeGreaterThan(0);
    for (const line of p) expect(line).toMatch(/^config: /);
    expect(p.every((l) => !l.includes('\n'))).toBe(true);
  });

  it('duplicate keys are an error', () => {
    expect(problems('listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\nroutes: {}\n')[0]).toMatch(/^config: Map keys must be unique/);
  });

  it.each(['42', '- a\n- b', '"text"'])('a document that is not a mapping (%j)', (text) => {
    expect(problems(text)).toEqual(['config: must be a mapping of keys to values']);
  });

  it.each(['', '# only a comment\n', 'null'])('an empty document (%j) is called empty', (text) => {
    expect(problems(text)).toEqual(['config: is empty; a config is a mapping of keys to values']);
  });

  it('an alias bomb is refused', () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(',')}]`);
    expect(() => parseConfig(sidecarSchema, bomb.join('\n'), {})).toThrow();
  });
});

describe('CLI', () => {
  const run = runLeash;
  const dir = mkdtempSync(join(tmpdir(), 'leash-cli-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('check on a bad config: exit 1, one line per problem on stderr, nothing on stdout, no secret', () => {
    const bad = file(
      'bad.yaml',
      [
        'listen: nowhere',
        'bogus: 1',
        'routes:',
        '  openai:',
        '    upstream: api.openai.com',
        '    credential: { value: sk-live-inline-secret-123456 }',
        '    inject: { header: authorization, format: "Bearer {{credential}}" }',
        '    allow: ["GET v1/models"]',
        '',
      ].join('\n'),
    );
    const r = run(['check', '--config', bad]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^leash: /);
    const text = r.stderr;
    for (const expected of [
      'listen: must be "host:port", e.g. "127.0.0.1:8080" (got "nowhere")',
      'bogus: unknown key (known keys here: ',
      'routes.openai.upstream: must be an http(s) URL (got "api.openai.com")',
      'routes.openai.allow[0]: path must start with "/"',
      'routes.openai.credential: ',
    ]) {
      expect(lines.filter((l) => l.includes(expected)), expected).toHaveLength(1);
    }
    expect(text).not.toContain('sk-live-inline-secret');
  });

  it('check on a single-problem config: exit 1 with exactly one line', () => {
    const bad = file('one.yaml', 'routes:\n  openai:\n    upstream: api.openai.com\n    credential: { env: K }\n    inject: { header: authorization }\n    allow: []\n');
    const r = run(['check', '--config', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`leash: ${bad}: 1 problem, read as a sidecar file by its top-level key routes:\n  routes.openai.upstream: must be an http(s) URL (got "api.openai.com")\n`);
  });

  it('check on a missing file and on a YAML syntax error: exit 1, one line', () => {
    const missing = run(['check', '--config', join(dir, 'nope.yaml')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^leash: --config: cannot read .*nope\.yaml \(ENOENT\)\n$/);
    const syntax = run(['check', '--config', file('syntax.yaml', 'routes: [unclosed\n')]);
    expect(syntax.status).toBe(1);
    expect(syntax.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(2);
    expect(syntax.stderr).toMatch(/syntax\.yaml: /);
  });

  it('check on a good config: exit 0, prints the plan without the secret', () => {
    const good = file('good.yaml', 'routes:\n  openai:\n    upstream: https://api.openai.com\n    credential: { env: OPENAI_KEY }\n    inject: { header: authorization, format: "Bearer {{credential}}" }\n    allow: ["GET /v1/models"]\n');
    const r = run(['check', '--config', good], { OPENAI_KEY: 'sk-check-secret-value-9876' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('route /openai/');
    expect(r.stdout + r.stderr).not.toContain('sk-check-secret-value-9876');
  });

  it('--help and --version exit 0; every command has --help', () => {
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/Usage/);
    const version = run(['--version']);
    expect(version.status).toBe(0);
    const pkg = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as { version: string };
    expect(version.stdout.trim()).toBe(pkg.version);
    for (const cmd of ['check', 'sidecar']) {
      const r = run([cmd, '--help']);
      expect(r.status, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(new RegExp(`leash ${cmd}`));
    }
  });

  it('unknown command, unknown option and missing --config: exit 1 with a one-line reason', () => {
    for (const args of [['frobnicate'], ['check', '--bogus'], ['check']]) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(/^leash: [^\n]+\n$/);
    }
  });
});
