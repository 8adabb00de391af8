import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

/** WebSocket handshakes that do not succeed: a refusal echoing the key, and an upstream that never answers. */
const SECRET = 'sk-ws-refusal-0123456789abcdef';
let upstream: Upstream;
let leash: RunningSidecar;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
});

function route(idle = '5m') {
  return {
    routes: {
      rt: {
        upstream: upstream.url,
        credential: { env: 'KEY' },
        inject: { header: 'authorization', format: 'Bearer {{credential}}' },
        allow: ['GET /socket'],
        timeouts: { idle },
      },
    },
  };
}

function unexpected(url: string): Promise<{ status: number; headers: IncomingMessage['headers']; body: string } | 'closed'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.on('error', () => resolve('closed'));
    ws.on('open', () => resolve('closed'));
  });
}

describe('WebSocket handshakes that fail', () => {
  it('scrubs a refusal that echoes the credential and counts the upstream auth failure', async () => {
    upstream = await startUpstream(() => undefined);
    upstream.server.on('upgrade', (req, socket) => {
      const auth = String(req.headers.authorization);
      const body = JSON.stringify({ error: `Incorrect API key provided: ${auth.slice(7)}` });
      socket.end(`HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\nx-debug: ${auth}\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    });
    leash = await startSidecar(route(), { env: { KEY: SECRET } });
    const res = await unexpected(`${leash.url.replace('http', 'ws')}/rt/socket`);
    expect(res).not.toBe('closed');
    if (res === 'closed') return;
    expect(res.status).toBe(401);
    expect(res.body).toContain('Incorrect API key provided: [REDACTED]');
    expect(JSON.stringify(res)).not.toContain(SECRET);
    const metrics = await (await fetch(`${leash.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_upstream_auth_failures_total\{route="rt",status="401"\} 1/);
    expect(metrics).toMatch(/leash_requests_total\{route="rt",method="GET",code="401"\} 1/);
  });

  it('gives up on an upstream that accepts the connection but never answers the upgrade', async () => {
    upstream = await startUpstream(() => undefined);
    const held: Array<{ destroy(): void }> = [];
    upstream.server.on('upgrade', (_req, socket) => held.push(socket)); // hold the socket, say nothing
    leash = await startSidecar(route('300ms'), { env: { KEY: SECRET } });
    const t0 = Date.now();
    const res = await unexpected(`${leash.url.replace('http', 'ws')}/rt/socket`);
    expect(Date.now() - t0).toBeLessThan(3_000);
    if (res !== 'closed') expect(res.status).toBe(504);
    const metrics = await (await fetch(`${leash.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_requests_total\{route="rt",method="GET",code="504"\} 1/);
    expect(held).toHaveLength(1);
    for (const s of held) s.destroy();
  });
});
