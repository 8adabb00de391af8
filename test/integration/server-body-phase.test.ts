import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RequestBodyFilter } from '../../src/sidecar/proxy/request-body.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * On a route that inspects bodies, the credential is taken once the body is read and
 * accepted, not when the head arrives (server.ts decide: SEND waits for the body phase).
 * A credential that becomes available while the agent is still sending (a refresh that
 * completes meanwhile) is used; none is looked at before the body is whole. An agent that
 * goes away mid-body is recorded as such (499): nothing is sent upstream, and nothing is
 * logged as a failure of the body phase.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-body-phase-credential-test-3e8b0d12';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-bpc', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-bpc' });
const accepts: RequestBodyFilter = { name: 'accepts-all', maxBytes: 4_096, end: () => undefined };

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp() {
  const seen: { body: string; authorization: string | undefined }[] = [];
  const upstream = await stand.upstream((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('latin1')));
    req.on('end', () => {
      seen.push({ body, authorization: req.headers.authorization });
      res.end('{"ok":true}');
    });
  });
  const provider = new HandsOutAnything(undefined);
  const route = routeFor(upstream.url, provider, { allow: ['POST /mcp'], timeouts: { connect: '2s', idle: '2s' } }, 'tools', { bodyFilters: [accepts] });
  const { port, outcomes, logs: sink } = await stand.start(route, { now: () => nowMs, level: 'debug' });
  const { sock, received } = await stand.open(port);
  return { seen, provider, outcomes, sink, sock, received };
}

describe('a route with a request-body phase', () => {
  it('takes the credential after the body: one that arrived while the body was sent is used', async () => {
    const { seen, provider, outcomes, sock, received } = await setUp();
    sock.write('POST /tools/mcp HTTP/1.1\r\nhost: leash\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"a":');
    await sleep(150);
    expect(received()).toBe(''); // nothing answered while the body is still coming, credential or not
    provider.held = cred();
    sock.write('"bcd"}');
    await waitFor(() => outcomes.length === 1 && received().endsWith('{"ok":true}'));
    expect(received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(outcomes[0]!.status).toBe(200);
    expect(seen).toEqual([{ body: '{"a":"bcd"}', authorization: `Bearer ${VALUE}` }]);
  });

  for (const type of ['application/json', 'text/plain']) {
    it(`an agent that goes away mid-body (${type}): 499, nothing upstream, no failure logged`, async () => {
      const { seen, provider, outcomes, sink, sock } = await setUp();
      provider.held = cred();
      sock.write(`POST /tools/mcp HTTP/1.1\r\nhost: leash\r\ncontent-type: ${type}\r\ncontent-length: 11\r\n\r\n{"a":`);
      await sleep(100);
      sock.destroy();
      await waitFor(() => outcomes.length === 1);
      await sleep(100);
      expect(outcomes[0]!.status).toBe(499);
      expect(seen).toHaveLength(0);
      const warnings = sink.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.level === 'warn' || e.level === 'error');
      expect(warnings).toEqual([]);
    });
  }
});
