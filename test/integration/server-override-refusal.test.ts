import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A POST body that names a method override, found on its way upstream (server.ts
 * forwardGuarded): the agent gets 400 leash_bad_request with `connection: close`, and its
 * connection is closed (the rest of what it sent is not read as another request).
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-override-refusal-test-credential-0c4d';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-ovr', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-ovr' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

describe('a POST whose body names a method override', () => {
  for (const [type, body] of [
    ['application/x-www-form-urlencoded', 'a=1&_method=DELETE'],
    ['application/json', '{"a":1,"_method":"DELETE"}'],
  ] as const) {
    it(`(${type}) is refused 400 and its connection closed`, async () => {
      const completed: string[] = [];
      const upstream = await stand.upstream((req, res) => {
        let got = '';
        req.on('data', (c: Buffer) => (got += c.toString('latin1')));
        req.on('end', () => {
          completed.push(got);
          res.end('ok');
        });
        req.on('error', () => undefined);
      });
      const route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['POST /**'] });
      const { outcomes, port } = await stand.start(route);
      const agent = await stand.open(port);
      agent.sock.write(`POST /search/x HTTP/1.1\r\nhost: leash\r\ncontent-type: ${type}\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
      await waitFor(() => agent.isClosed(), { timeoutMs: 2_000, message: 'leash to close the connection' });
      const text = agent.received();
      expect(text).toMatch(/^HTTP\/1\.1 400 /);
      expect(text).toContain('leash_bad_request');
      expect(text.toLowerCase()).toContain('\r\nconnection: close\r\n');
      expect(outcomes.map((o) => o.status)).toEqual([400]);
      expect(completed).toEqual([]);
    });
  }
});
