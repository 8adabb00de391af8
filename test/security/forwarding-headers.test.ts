import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORWARDING_HEADERS } from '../../src/sidecar/proxy/headers.js';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * The agent is the client, not a proxy: what it claims in forwarding headers is false, and
 * upstreams act on it. Rails takes `X-Forwarded-Host` as `request.host` (a tenant chosen by
 * subdomain), frameworks build links and OAuth callbacks from the forwarded host, scheme
 * and prefix, and IP allow lists and rate limits read `X-Forwarded-For` / `X-Real-IP`. The
 * route names the upstream: none of these may reach it from the agent, in any spelling a
 * server reads as the same header (CGI: `-` and `_` alike, any case), on any method, nor
 * on a WebSocket upgrade. leash adds none of its own.
 */
const SECRET = 'sk-forwarding-7c1e5a3b9d2f40618a2b';

/** The header names a server reading CGI variables or lower-cased names sees, `_` read as `-`. */
const canonical = (name: string) => name.toLowerCase().replace(/_/g, '-');

/** Spellings of `name`: as listed, Title-Case, upper case, and with every `-` as `_`. */
function spellings(name: string): string[] {
  const title = name.replace(/(^|-)([a-z])/g, (_, sep: string, c: string) => sep + c.toUpperCase());
  return [...new Set([name, title, name.toUpperCase(), name.replace(/-/g, '_'), title.replace(/-/g, '_').toUpperCase()])];
}

const CLAIMS = FORWARDING_HEADERS.flatMap((name) => spellings(name));

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
const upgrades: Array<{ url: string; names: string[] }> = [];

beforeAll(async () => {
  up = await startRecordingUpstream();
  up.server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgrades.push({ url: req.url!, names: req.rawHeaders.filter((_, i) => i % 2 === 0) });
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  });
  leash = await startSidecar(
    {
      routes: {
        api: bearerRoute(up.url, ['GET /v1/**', 'POST /v1/**']),
      },
    },
    { env: { KEY: SECRET } },
  );
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

const claimLines = CLAIMS.map((h, i) => `${h}: ${h.toLowerCase().includes('ip') || h.toLowerCase().endsWith('for') ? `10.0.0.${i % 250}` : 'tenant-b.example.com'}\r\n`).join('');
const forwardedNames = (rawHeaders: readonly string[]) => rawHeaders.filter((_, i) => i % 2 === 0).map(canonical).filter((n) => FORWARDING_HEADERS.includes(n));

describe('forwarding headers from the agent never reach the upstream', () => {
  it('covers the forwarding headers servers act on', () => {
    expect(FORWARDING_HEADERS).toEqual(expect.arrayContaining(['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-prefix', 'x-real-ip', 'true-client-ip']));
    expect(CLAIMS.length).toBeGreaterThanOrEqual(FORWARDING_HEADERS.length * 3);
  });

  it.each([
    ['GET', ''],
    ['POST', 'Content-Length: 2\r\n'],
    ['POST', 'Transfer-Encoding: chunked\r\n'],
  ])('%s %s: every spelling of every one is removed, the request still forwarded with the credential', async (method, framing) => {
    up.seen.length = 0;
    const body = framing.startsWith('Content-Length') ? '{}' : framing ? '2\r\n{}\r\n0\r\n\r\n' : '';
    const agent = await rawRequest(port, `${method} /api/v1/items HTTP/1.1\r\nHost: l\r\n${claimLines}${framing}Connection: close\r\n\r\n${body}`, { expectResponses: 1 });
    expect(agent.responses[0]?.status).toBe(200);
    expect(up.seen).toHaveLength(1);
    const seen = up.seen[0]!;
    expect(seen.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(forwardedNames(seen.rawHeaders)).toEqual([]);
    // And the host the upstream sees is the route's.
    expect(seen.headers.host).toBe(new URL(up.url).host);
  });

  it('a WebSocket upgrade carries none either', async () => {
    upgrades.length = 0;
    await rawRequest(
      port,
      `GET /api/v1/socket HTTP/1.1\r\nHost: l\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${claimLines}\r\n`,
      { expectResponses: 1 },
    );
    expect(upgrades).toHaveLength(1);
    expect(forwardedNames(upgrades[0]!.names)).toEqual([]);
  });

  it('a header that only looks like one is forwarded (x-forwarded-by-agent, forwarded-for-me)', async () => {
    up.seen.length = 0;
    await rawRequest(port, 'GET /api/v1/items HTTP/1.1\r\nHost: l\r\nX-Forwarded-By-Agent: yes\r\nForwarded-For-Me: yes\r\nConnection: close\r\n\r\n', { expectResponses: 1 });
    expect(up.seen[0]!.headers['x-forwarded-by-agent']).toBe('yes');
    expect(up.seen[0]!.headers['forwarded-for-me']).toBe('yes');
  });
});
