import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A POST without a body (neither content-length nor transfer-encoding) has nothing a
 * method override could hide in: it is forwarded whatever its content-type says, even one
 * the body-override scanner would refuse to read (a multipart type without a boundary, a
 * form in a charset whose names are not ASCII). Only a POST with a body goes through the
 * override guard (server.ts proceed).
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-bodyless-post-test-credential-7a91c3';
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-bodyless', acquiredAtMs: 0, expiresAtMs: 3_600_000, lease: 'L-bodyless' });

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp() {
  const seen: { method: string; url: string; body: string }[] = [];
  const heads: string[] = [];
  const upstream = await stand.upstream((req, res) => {
    heads.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('latin1')));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, body });
      res.end('{"ok":true}');
    });
  });
  const route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['GET /**', 'POST /**'] });
  const { outcomes, port } = await stand.start(route);
  return { seen, heads, outcomes, port };
}

/** Sends `raw` on a new connection; resolves with what was read once an answer with its JSON body is in, or the connection closed. */
async function send(port: number, raw: string): Promise<string> {
  return (await stand.exchange(port, raw, { until: (text) => /\r\n\r\n[\s\S]*\}$/.test(text) })).text;
}

describe('a POST without a body', () => {
  for (const type of ['multipart/form-data', 'application/x-www-form-urlencoded; charset=utf-16']) {
    it(`is forwarded with content-type ${type}`, async () => {
      const { seen, outcomes, port } = await setUp();
      const answer = await send(port, `POST /search/nobody HTTP/1.1\r\nhost: leash\r\ncontent-type: ${type}\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      await waitFor(() => outcomes.length === 1);
      expect(outcomes[0]!.status).toBe(200);
      expect(seen).toEqual([{ method: 'POST', url: '/nobody', body: '' }]);
    });
  }

  it('with a body and such a content-type is refused, nothing forwarded (the contrast)', async () => {
    const { seen, heads, port } = await setUp();
    const answer = await send(port, 'POST /search/body HTTP/1.1\r\nhost: leash\r\ncontent-type: multipart/form-data\r\ncontent-length: 2\r\n\r\nab');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('leash_bad_request');
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toHaveLength(0);
    expect(heads).toEqual([]);
  });
});
