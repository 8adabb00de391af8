import { describe, expect, it } from 'vitest';
import { firstMatch, parseRule, ruleMatches, tunnelDenied, tunnelSegment, type AllowRule } from '../../src/config/rules.js';

/**
 * Endpoints that carry requests of their own (rules.ts TUNNELS): a wildcard never reaches
 * one for a method that can change something; a rule must name it. As a class: every
 * tunnel, in every spelling a server routes to it, under every wildcard form, for every
 * method.
 */
const rule = (text: string): AllowRule => {
  const r = parseRule(text);
  if (typeof r === 'string') throw new Error(r);
  return r;
};
const segs = (path: string) => path.slice(1).split('/');

const TUNNELS = ['$batch', 'batch', '_bulk', 'composite', 'graphql'];
const spellings = (t: string) => [t, t.toUpperCase(), t[0]!.toUpperCase() + t.slice(1), `${t}.json`, `${t};jsessionid=1`];
const WRITES = ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND'];

describe('tunnel endpoints need a rule that names them', () => {
  for (const t of TUNNELS) {
    for (const spelt of spellings(t)) {
      it(`${spelt}: no wildcard reaches it for a write; a literal rule does`, () => {
        expect(tunnelSegment(spelt)).toBe(t);
        const path = `/v1.0/${spelt}`;
        for (const method of WRITES) {
          for (const text of [`${method} /v1.0/*`, `${method} /v1.0/**`, `${method} /**`, `* /**`, `* /*/*`, `${method} /*/**`]) {
            expect(ruleMatches(rule(text), method, segs(path)), `${text} ~ ${method} ${path}`).toBe(false);
          }
          // deeper: Google's /batch/drive/v3, Salesforce's /composite/batch, ES's /index/_bulk
          expect(ruleMatches(rule(`${method} /**`), method, segs(`/a/${spelt}/b`))).toBe(false);
          expect(tunnelDenied([rule(`${method} /**`)], method, segs(path))).toBe(t);
        }
        // Named: allowed (exactly as spelt, like any literal segment).
        expect(ruleMatches(rule(`POST /v1.0/${spelt}`), 'POST', segs(path))).toBe(true);
        expect(ruleMatches(rule(`* /v1.0/${spelt}/**`), 'POST', segs(`${path}/x/y`))).toBe(true);
        // Reads are not guarded: GET /graphql?query=… runs queries only.
        for (const method of ['GET', 'HEAD']) {
          expect(ruleMatches(rule(`${method} /**`), method, segs(path))).toBe(true);
          expect(tunnelDenied([rule(`${method} /**`)], method, segs(path))).toBeUndefined();
        }
      });
    }
  }

  it('ordinary segments, including ones that only contain a tunnel\'s name, are untouched', () => {
    for (const seg of ['batches', 'messages', 'graphqlx', 'my_bulk', 'composites', 'x.batch', 'bulk', 'gql']) {
      expect(tunnelSegment(seg), seg).toBeUndefined();
      expect(ruleMatches(rule('POST /v1/**'), 'POST', segs(`/v1/${seg}`)), seg).toBe(true);
    }
    // OpenAI's and Anthropic's batch jobs are resources (`batches`), not tunnels.
    expect(firstMatch([rule('POST /v1/**')], 'POST', segs('/v1/messages/batches'))?.text).toBe('POST /v1/**');
  });

  it('a denial for another reason names no tunnel', () => {
    expect(tunnelDenied([rule('GET /v1/**')], 'POST', segs('/v1/graphql'))).toBeUndefined();
    expect(tunnelDenied([rule('POST /v2/**')], 'POST', segs('/v1/$batch'))).toBeUndefined();
  });
});
