import { describe, expect, it } from 'vitest';
import type { InjectConfig } from '../../src/config/sidecar.js';
import { injectedHeader, injectedHeaderName, injectedQuery, scrubOptionsFor } from '../../src/sidecar/proxy/inject.js';

/** Each inject mode in one place (src/sidecar/proxy/inject.ts): what is sent, what is stripped, what is scrubbed. */
const header: InjectConfig = { header: 'x-api-key', format: 'Key {{credential}}' };
const basic: InjectConfig = { basic: { username: 'svc' } };
const query: InjectConfig = { query: 'api_key' };
// `$&` and `$'` would be replacement patterns to String.replace with a string.
const VALUE = "sk-inject-$&-$'-0123456789";

describe('inject modes', () => {
  it('header: the format with the value, the header stripped from the agent, the format scrubbed', () => {
    expect(injectedHeader(header, VALUE)).toEqual(['x-api-key', `Key ${VALUE}`]);
    expect(injectedQuery(header, '?a=1', VALUE)).toBe('?a=1');
    expect(injectedHeaderName(header)).toBe('x-api-key');
    expect(scrubOptionsFor(header)).toEqual({ format: 'Key {{credential}}' });
  });

  it('basic: base64 of username:value in authorization; the encoded pair scrubbed', () => {
    expect(injectedHeader(basic, VALUE)).toEqual(['authorization', `Basic ${Buffer.from(`svc:${VALUE}`).toString('base64')}`]);
    expect(injectedHeaderName(basic)).toBeUndefined();
    expect(scrubOptionsFor(basic)).toEqual({ basicUser: 'svc' });
  });

  it('query: no header; the agent’s own parameter replaced by leash’s, the rest of the query kept', () => {
    expect(injectedHeader(query, VALUE)).toBeUndefined();
    expect(injectedQuery(query, '', VALUE)).toBe(`?api_key=${encodeURIComponent(VALUE)}`);
    expect(injectedQuery(query, '?a=1&api_key=agents-own&b=2', VALUE)).toBe(`?a=1&b=2&api_key=${encodeURIComponent(VALUE)}`);
    expect(injectedQuery(query, '?api%5Fkey=encoded-own', VALUE)).toBe(`?api_key=${encodeURIComponent(VALUE)}`);
    expect(injectedHeaderName(query)).toBeUndefined();
    expect(scrubOptionsFor(query)).toEqual({});
  });
});
