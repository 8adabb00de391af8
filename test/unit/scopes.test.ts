import { describe, expect, it } from 'vitest';
import { firstMatch, parseRule, type AllowRule } from '../../src/config/rules.js';
import type { AuditEntry } from '../../src/core/protocol.js';
import { analyzeScopes, narrowestRules } from '../../src/telemetry/scopes.js';

const rules = (...texts: string[]): AllowRule[] => texts.map((t) => parseRule(t) as AllowRule);

const usage = (over: Record<string, string>): AuditEntry => ({
  v: '1',
  event: 'usage',
  at: '2026-11-26T10:00:00.000Z',
  instance: 'a1',
  route: 'openai',
  credential: 'openai-key',
  lease: 'l-1',
  fingerprint: 'sha256:0123456789ab',
  method: 'GET',
  path: '/v1/models/gpt-4',
  status: '2xx',
  count: '1',
  first: '2026-11-26T10:00:00.000Z',
  last: '2026-11-26T10:00:00.000Z',
  ...over,
});

const config = {
  openai: { credential: 'openai-key', allow: rules('GET /v1/**', 'POST /v1/chat/completions', 'DELETE /v1/files/*') },
  github: { credential: 'env:GITHUB_TOKEN', allow: rules('GET /repos/**') },
};

describe('leash scopes analysis', () => {
  it('narrows GET /v1/** to GET /v1/models/* when only models were read', () => {
    const r = analyzeScopes(
      [usage({ path: '/v1/models/gpt-4', count: '3' }), usage({ path: '/v1/models/gpt-4o', count: '2', status: '4xx' }), usage({ path: '/v1/models/gpt-4', count: '1' })],
      config,
    );
    const openai = r.routes.find((x) => x.route === 'openai')!;
    expect(openai.requests).toBe(6);
    expect(openai.narrowest).toEqual(['GET /v1/models/*']);
    expect(openai.operations).toEqual([
      { method: 'GET', path: '/v1/models/gpt-4', rule: 'GET /v1/**', count: 4, statuses: { '2xx': 4 } },
      { method: 'GET', path: '/v1/models/gpt-4o', rule: 'GET /v1/**', count: 2, statuses: { '4xx': 2 } },
    ]);
    expect(openai.rulesNeverMatched).toEqual(['POST /v1/chat/completions', 'DELETE /v1/files/*']);
  });

  it('reports configured credentials never used, with every rule unmatched', () => {
    const r = analyzeScopes([usage({})], config);
    expect(r.unused).toEqual([{ route: 'github', credential: 'env:GITHUB_TOKEN' }]);
    expect(r.routes.find((x) => x.route === 'github')).toMatchObject({ requests: 0, rulesNeverMatched: ['GET /repos/**'], narrowest: [] });
  });

  it('without a config: credentials acquired (per the stream) but never used, and no rule analysis', () => {
    const r = analyzeScopes([
      { event: 'credential.acquired', route: 'github', credential: 'gh-token', instance: 'a1' },
      { event: 'credential.acquired', route: 'openai', credential: 'openai-key', instance: 'a1' },
      usage({}),
    ]);
    expect(r.unused).toEqual([{ route: 'github', credential: 'gh-token' }]);
    expect(r.routes).toHaveLength(1);
    expect(r.routes[0]).toMatchObject({ route: 'openai', configured: undefined, rulesNeverMatched: undefined, narrowest: ['GET /v1/models/gpt-4'] });
    expect(r.routes[0]!.operations[0]!.rule).toBeUndefined();
  });

  it('uses the rule an entry carries over the config, and keeps one rule per method and shape', () => {
    const r = analyzeScopes(
      [
        usage({ method: 'POST', path: '/v1/chat/completions', rule: 'POST /v1/chat/completions' }),
        usage({ method: 'DELETE', path: '/v1/files/f-1', rule: 'DELETE /v1/files/*' }),
        usage({ method: 'DELETE', path: '/v1/files/f-2', rule: 'DELETE /v1/files/*' }),
        usage({ path: '/v1/models' }),
      ],
      config,
    );
    const openai = r.routes.find((x) => x.route === 'openai')!;
    expect(openai.narrowest).toEqual(['DELETE /v1/files/*', 'GET /v1/models', 'POST /v1/chat/completions']);
    expect(openai.rulesNeverMatched).toEqual([]);
  });

  it('leaves out refused requests, the overflow entry and unrouted requests, and counts them', () => {
    const r = analyzeScopes(
      [
        usage({ method: 'DELETE', path: '/v1/models/x', denied: 'leash_denied', status: '4xx', count: '7' }),
        usage({ path: '(other)', route: '', method: '', count: '5' }),
        usage({ route: '(none)', path: '/nope', count: '2' }),
        usage({ count: 'garbage' }),
        { event: 'lease.issued', lease: 'l-9' },
      ],
      config,
    );
    expect(r.skipped).toEqual({ denied: 7, overflow: 5, noRoute: 2, newer: 0 });
    expect(r.routes.find((x) => x.route === 'openai')).toMatchObject({ requests: 0 });
    expect(r.unused.map((u) => u.route)).toEqual(['github', 'openai']);
  });

  it('flags one lease in use on two instances as anomaly.cloned_credential (and not one value on several leases)', () => {
    const r = analyzeScopes([
      usage({ instance: 'a1', lease: 'l-1' }),
      usage({ instance: 'a1', lease: 'l-1', path: '/v1/models/x' }),
      usage({ instance: 'b7', lease: 'l-1' }),
      // A static issuer hands the same value to every instance under separate leases: not a clone.
      usage({ instance: 'a1', lease: 'l-2', fingerprint: 'sha256:ffffffffffff' }),
      usage({ instance: 'b7', lease: 'l-3', fingerprint: 'sha256:ffffffffffff' }),
    ]);
    expect(r.cloned).toEqual([
      { event: 'anomaly.cloned_credential', lease: 'l-1', fingerprint: 'sha256:0123456789ab', credential: 'openai-key', instances: ['a1', 'b7'] },
    ]);
  });

  it('narrowest rules name a batch or GraphQL endpoint, which no wildcard allows (rules.ts)', () => {
    const ops = [
      { method: 'POST', path: '/v1.0/users' },
      { method: 'POST', path: '/v1.0/$batch' },
      { method: 'POST', path: '/v1.0/groups' },
      { method: 'POST', path: '/a/graphql' },
      { method: 'POST', path: '/b/graphql' },
      { method: 'GET', path: '/v1.0/$batch' },
      { method: 'GET', path: '/v1.0/me' },
    ];
    const rules = narrowestRules(ops);
    expect(rules).toEqual(['GET /v1.0/*', 'POST /*/graphql', 'POST /v1.0/$batch', 'POST /v1.0/*']);
    const parsed = rules.map((r) => parseRule(r) as AllowRule);
    for (const op of ops) expect(firstMatch(parsed, op.method, op.path.slice(1).split('/')), `${op.method} ${op.path}`).toBeDefined();
  });

  it('narrowest rules are always valid rules: odd segments become *', () => {
    expect(narrowestRules([{ method: 'GET', path: '/a/b*c' }, { method: 'GET', path: '/a/%20x' }])).toEqual(['GET /a/*']);
    expect(narrowestRules([{ method: 'GET', path: '/' }])).toEqual(['GET /']);
    expect(narrowestRules([{ method: 'GET', path: '/a/' }])).toEqual(['GET /a/*']);
    expect(narrowestRules([{ method: 'GET', path: '/x/1' }, { method: 'GET', path: '/x/1/2' }])).toEqual(['GET /x/1', 'GET /x/1/2']);
  });
});

describe('leash scopes on hostile stream entries (a compromised writer)', () => {
  it('route names every object has (constructor, toString, __proto__) are routes like any other, not a crash', () => {
    for (const route of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const report = analyzeScopes([usage({ route }), usage({})], config);
      expect(report.routes.map((r) => r.route)).toContain(route);
    }
  });

  it('counts that are not positive integers are ignored; status tallies hold only statuses', () => {
    const report = analyzeScopes([usage({ count: '-7' }), usage({ count: '1e400' }), usage({ count: '2.5' }), usage({ count: '3', status: 'constructor' }), usage({ count: '2' })], config);
    const openai = report.routes.find((r) => r.route === 'openai')!;
    expect(openai.requests).toBe(5);
    expect(Object.getPrototypeOf(openai.operations[0]!.statuses)).toBeNull();
    expect(openai.operations[0]!.statuses).toEqual({ constructor: 3, '2xx': 2 });
  });
});
