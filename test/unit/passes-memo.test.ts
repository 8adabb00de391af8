import { describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { runPasses } from '../../src/sidecar/proxy/passes.js';
import { contextOf, envFor, HandsOutAnything, requestOf, routeFor } from '../helpers/passes.js';

/**
 * buildOutgoing remembers the last credential header per route and the last narrowed
 * Accept-Encoding. A rotation (same route, new value) and a different Accept-Encoding must
 * be seen on the very next request; another route never gets this one's header.
 */
const cred = (value: string): HeldCredential => ({ value, fingerprint: value, acquiredAtMs: 0, expiresAtMs: undefined, lease: undefined });

describe('buildOutgoing memos', () => {
  it('a rotated credential and a changed Accept-Encoding are used on the next request', () => {
    const provider = new HandsOutAnything(cred('sk-first-value-0123456789'));
    const route = routeFor('http://127.0.0.1:1/base', provider);
    const basic = routeFor('http://127.0.0.1:1/base', provider, { inject: { basic: { username: 'u' } } });
    const send = (r: typeof route, ae?: string) => {
      const raw = ['Host', '127.0.0.1', ...(ae === undefined ? [] : ['Accept-Encoding', ae])];
      const req = requestOf('GET', '/search/v1/x', raw);
      const ctx = contextOf(false);
      expect(runPasses(req, ctx, envFor(r, () => 0, () => false))).toBeUndefined();
      return { auth: ctx.outgoingHeaders.authorization, ae: req.headers['accept-encoding'] };
    };
    try {
      expect(send(route, 'gzip, zstd')).toEqual({ auth: 'Bearer sk-first-value-0123456789', ae: 'gzip' });
      expect(send(route, 'gzip, zstd')).toEqual({ auth: 'Bearer sk-first-value-0123456789', ae: 'gzip' });
      expect(send(basic, 'zstd').auth).toBe(`Basic ${Buffer.from('u:sk-first-value-0123456789').toString('base64')}`);
      provider.held = cred('sk-second-value-9876543210');
      expect(send(route, 'br;q=1, zstd')).toEqual({ auth: 'Bearer sk-second-value-9876543210', ae: 'br;q=1' });
      expect(send(route, 'zstd')).toEqual({ auth: 'Bearer sk-second-value-9876543210', ae: 'identity' });
      expect(send(route)).toEqual({ auth: 'Bearer sk-second-value-9876543210', ae: undefined });
      expect(send(basic).auth).toBe(`Basic ${Buffer.from('u:sk-second-value-9876543210').toString('base64')}`);
    } finally {
      route.close();
      basic.close();
    }
  });
});
