import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeldCredential } from '../../src/sidecar/credentials/types.js';
import type { RequestBodyFilter } from '../../src/sidecar/proxy/request-body.js';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * A route with request-body filters reads the body whole before SEND (server.ts
 * inspectBody): a method override named in that body is refused there — 400
 * leash_bad_request with the route, the connection closed, nothing forwarded — and a
 * request without a body goes out without a framing header the agent did not send.
 */
// A fake credential made up for this test: not a real key.
const VALUE = 'sk-body-phase-override-credential-0123456789';
const nowMs = 1_000_000;
const cred = (): HeldCredential => ({ value: VALUE, fingerprint: 'fp-bpo', acquiredAtMs: nowMs - 1_000, expiresAtMs: nowMs + 3_600_000, lease: 'L-bpo' });
const acceptAll: RequestBodyFilter = { name: 'accept-all', maxBytes: 4_096, end: () => undefined };

interface Seen {
  method: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const stand = new ProxyStand();
afterEach(() => stand.teardown());

async function setUp() {
  const seen: Seen[] = [];
  const upstream = await stand.upstream((req, res) => {
    const s: Seen = { method: req.method!, headers: req.headers, body: '' };
    seen.push(s);
    req.setEncoding('utf8');
    req.on('data', (c: string) => (s.body += c));
    req.on('end', () => res.end('{"ok":true}'));
  });
  const route = routeFor(upstream.url, new HandsOutAnything(cred()), { allow: ['POST /form', 'GET /items'], timeouts: { connect: '2s', idle: '2s' } }, 'tools', {
    bodyFilters: [acceptAll],
  });
  const { outcomes, port } = await stand.start(route, { now: () => nowMs });
  return { seen, outcomes, port };
}

const bodyOf = (raw: string): Record<string, unknown> => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;

describe('a method override in a body read by the body phase', () => {
  it('is refused 400 leash_bad_request naming the route; the connection closes; nothing reaches the upstream', async () => {
    const { seen, port, outcomes } = await setUp();
    const a = await stand.open(port);
    const form = 'a=1&_method=DELETE';
    a.sock.write(`POST /tools/form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\n\r\n${form}`);
    await waitFor(() => a.received().includes('}}'));
    const raw = a.received();
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw.toLowerCase()).toContain('x-leash-error: leash_bad_request');
    expect(raw.toLowerCase()).toContain('connection: close');
    const err = bodyOf(raw).error as { type: string; route: unknown; message: string };
    expect(err.type).toBe('leash_bad_request');
    expect(err.route).toBe('tools');
    expect(err.message).toContain('_method');
    await a.closed;
    expect(seen).toHaveLength(0);
    await waitFor(() => outcomes.length === 1);
    expect(outcomes[0]!.status).toBe(400);
    expect(outcomes[0]!.denied?.type).toBe('leash_bad_request');
  });

  it('a request pipelined behind the refused one is never forwarded', async () => {
    const { seen, port } = await setUp();
    const a = await stand.open(port);
    const form = '_method=PUT';
    a.sock.write(
      `POST /tools/form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\n\r\n${form}` +
        `GET /tools/items HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await a.closed;
    expect(a.received()).toMatch(/^HTTP\/1\.1 400 /);
    expect(a.received()).not.toContain('{"ok":true}');
    await sleep(50);
    expect(seen).toHaveLength(0);
  });

  it('a multipart body whose boundary cannot be read is refused 400 leash_bad_request, not forwarded', async () => {
    const { seen, port } = await setUp();
    const a = await stand.open(port);
    const body = '--a\r\ncontent-disposition: form-data; name="x"\r\n\r\n1\r\n--a--\r\n';
    a.sock.write(`POST /tools/form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=a; boundary=b\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await waitFor(() => a.received().includes('}}'));
    expect(a.received()).toMatch(/^HTTP\/1\.1 400 /);
    expect((bodyOf(a.received()).error as { type: string }).type).toBe('leash_bad_request');
    await a.closed;
    expect(seen).toHaveLength(0);
  });
});

describe('framing of what the body phase forwards', () => {
  it('a GET without a body reaches the upstream without a content-length or transfer-encoding', async () => {
    const { seen, port } = await setUp();
    const a = await stand.open(port);
    a.sock.write(`GET /tools/items HTTP/1.1\r\nHost: x\r\n\r\n`);
    await waitFor(() => a.received().includes('{"ok":true}'));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers['content-length']).toBeUndefined();
    expect(seen[0]!.headers['transfer-encoding']).toBeUndefined();
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${VALUE}`);
  });

  it('a form body without an override is forwarded whole, framed by its length', async () => {
    const { seen, port } = await setUp();
    const a = await stand.open(port);
    const form = 'a=1&method=DELETE';
    a.sock.write(`POST /tools/form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n${form.length.toString(16)}\r\n${form}\r\n0\r\n\r\n`);
    await waitFor(() => a.received().includes('{"ok":true}'));
    expect(seen[0]!.body).toBe(form);
    expect(seen[0]!.headers['content-length']).toBe(String(form.length));
  });
});
