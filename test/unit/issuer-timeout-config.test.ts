import { describe, expect, it } from 'vitest';
import { authoritySchema } from '../../src/config/authority.js';
import { parseConfig } from '../../src/config/load.js';

/** An exec/oauth2 timeout of 0, or one past setTimeout's 2^31-1 ms (fired after 1 ms), fails every lease. */
const doc = (cred: Record<string, unknown>) =>
  JSON.stringify({ listen: '127.0.0.1:0', trustDomain: 'leash.local', credentials: { c: cred }, policies: [{ identities: ['join:a'], credentials: ['c'] }] });
const exec = (timeout?: string) => ({ kind: 'exec', command: ['mint'], ...(timeout ? { timeout } : {}) });
const oauth2 = (timeout?: string) => ({ kind: 'oauth2', tokenUrl: 'https://idp.example/token', clientId: 'x', clientSecret: { env: 'S' }, ...(timeout ? { timeout } : {}) });

describe('issuer timeouts in the authority config', () => {
  it('between 100ms and 10m; 10s by default', () => {
    for (const make of [exec, oauth2]) {
      expect(() => parseConfig(authoritySchema, doc(make('0s')), {})).toThrow(/timeout: must be at least 100ms/);
      expect(() => parseConfig(authoritySchema, doc(make('30d')), {})).toThrow(/timeout: must be at most 10m/);
      expect((parseConfig(authoritySchema, doc(make('10m')), {}).credentials.c as { timeout: number }).timeout).toBe(600_000);
      expect((parseConfig(authoritySchema, doc(make()), {}).credentials.c as { timeout: number }).timeout).toBe(10_000);
    }
  });
});
