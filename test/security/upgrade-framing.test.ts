import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, sleep, startUpgradeRefusingUpstream, type UpgradeRefusingUpstream } from '../helpers/security-net.js';

/**
 * WebSocket handshakes and request smuggling (an attacker's pass): an allowed
 * `GET /ws` upgrade declaring `Content-Length: N` went upstream with that header but no
 * body (http-proxy's ws path sends the head only), on a pooled keep-alive connection. An
 * upstream that refused the upgrade without reading a body and kept the connection then
 * read the next request leash sent on it as those N bytes, and the agent's own bytes that
 * followed as requests — one completed with leash's credential. So: a handshake with any
 * framing is refused, and a handshake's upstream connection is never reused.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-upgrade-3b9e1d7c5a2f4e6d8c0b';

let up: UpgradeRefusingUpstream;
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = await startUpgradeRefusingUpstream();
  leash = await startSidecar(
    {
      routes: {
        api: {
          upstream: `http://127.0.0.1:${up.port}`,
          credential: { env: 'KEY' },
          inject: { header: 'authorization', format: 'Bearer {{credential}}' },
          allow: ['GET /ws', 'GET /v1/**', 'POST /v1/chat'],
        },
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
beforeEach(() => {
  up.seen.length = 0;
});

const HANDSHAKE = 'GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';
const SMUGGLED = 'GET /admin/delete-everything HTTP/1.1\r\nHost: x\r\n\r\n';

describe('a WebSocket handshake that declares a body is refused, never forwarded', () => {
  const FRAMINGS: [name: string, bytes: string][] = [
    ['Content-Length: 0', 'Content-Length: 0\r\n\r\n'],
    ['Content-Length with a body', `Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
    ['Content-Length, body never sent (the attack: leash\'s next head fills it)', 'Content-Length: 300\r\n\r\n'],
    ['Transfer-Encoding: chunked', `Transfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`],
    ['Transfer-Encoding: chunked, empty', 'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ];
  it.each(FRAMINGS)('%s', async (_name, framing) => {
    const ex = await rawRequest(port, HANDSHAKE + framing, { timeoutMs: 1_500 });
    expect(ex.responses[0]?.status, ex.raw).toBe(400);
    expect(ex.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
    await sleep(50);
    expect(up.seen).toEqual([]);
  });
});

describe("a handshake's upstream connection is never reused", () => {
  it('after a refused upgrade, the next requests go out on other connections, and that one is closed', async () => {
    // The agent keeps its side open (it never reads to the end nor closes).
    const agent = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    agent.on('error', () => undefined);
    let answer = '';
    agent.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    agent.write(`${HANDSHAKE}\r\n`);
    for (let i = 0; i < 100 && !answer.includes('\r\n\r\n'); i++) await sleep(10);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    await sleep(50);
    for (let i = 0; i < 3; i++) {
      const ok = await rawRequest(port, `GET /api/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      expect(ok.responses[0]?.status).toBe(200);
    }
    const upgrade = up.seen.find((s) => s.line.startsWith('GET /ws '))!;
    const others = up.seen.filter((s) => s !== upgrade);
    expect(others.map((s) => s.line)).toEqual(Array(3).fill('GET /v1/models HTTP/1.1'));
    expect(others.every((s) => s.conn !== upgrade.conn)).toBe(true);
    await sleep(100);
    expect(up.closed.has(upgrade.conn)).toBe(true);
    agent.destroy();
    // The credential went out only in the heads leash built for allowed requests.
    expect(up.seen.every((s) => s.head.includes(`Bearer ${SECRET}`))).toBe(true);
  });
});
