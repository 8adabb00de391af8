import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:https';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tlsFiles } from '../../src/bin/injector.js';
import { parseInjectorConfig } from '../../src/config/injector.js';
import { DEFAULT_MAX_BUFFERED, InjectorServer } from '../../src/injector/server.js';
import { issueServerCert, makeCa, type TestCa } from '../helpers/proxy-tls.js';

/**
 * Anything in the cluster reaches the webhook's port (its NetworkPolicy cannot name the API
 * server), with no client authentication. Uploads held open must not add up without bound:
 * forty ~8 MiB bodies held the injector at ~390 MiB RSS, past its 256Mi limit.
 */
let ca: TestCa;
let dir: string;
let server: InjectorServer;
let port: number;

beforeAll(async () => {
  ca = makeCa();
  dir = mkdtempSync(join(tmpdir(), 'leash-injector-mem-'));
  const cert = issueServerCert(ca);
  writeFileSync(join(dir, 'tls.crt'), cert.certPem);
  writeFileSync(join(dir, 'tls.key'), cert.keyPem);
  const injector = parseInjectorConfig(
    `tls: { certFile: ${join(dir, 'tls.crt')}, keyFile: ${join(dir, 'tls.key')} }
image: ghcr.io/example/leash:0.9.0
authority: { url: "https://leash-authority.leash-system.svc:8443" }
routes:
  openai: { upstream: "https://api.openai.com", credential: openai, inject: { header: authorization, format: "Bearer {{credential}}" }, allow: ["GET /v1/models"] }
`,
    {},
  );
  server = new InjectorServer({ injector, tls: tlsFiles(join(dir, 'tls.crt'), join(dir, 'tls.key')), logger: pino({ level: 'silent' }), reloadInterval: 60_000 });
  port = (await server.listen('127.0.0.1', 0)).port;
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An upload of `size` bytes of JSON whitespace whose last 2 bytes are never sent; resolves with the status line if the server answers. */
function heldUpload(size: number): { socket: TLSSocket; sent: Promise<void>; answer: Promise<string> } {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.certPem });
  socket.on('error', () => undefined);
  let text = '';
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => resolve(text.split('\r\n')[0] ?? ''));
  });
  const sent = new Promise<void>((resolve) => {
    socket.once('secureConnect', async () => {
      socket.write(`POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${size + 2}\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      for (let n = 0; n < size && !socket.destroyed; n += chunk.length) if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
      resolve();
    });
    socket.once('close', () => resolve());
  });
  return { socket, sent, answer };
}

describe('injector memory under held-open uploads', () => {
  it('holds at most its budget of request bytes: uploads beyond it are answered 503 and closed; reviews work again after', async () => {
    const uploads = Array.from({ length: 12 }, () => heldUpload(8 * 1024 * 1024 - 64 * 1024));
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, server.bufferedBytes ?? Infinity)), 5);
    await Promise.race([Promise.all(uploads.map((u) => u.sent)), new Promise((r) => setTimeout(r, 10_000))]);
    await new Promise((r) => setTimeout(r, 200));
    clearInterval(watch);
    const shed = uploads.filter((u) => u.socket.destroyed);
    expect(shed.length).toBeGreaterThanOrEqual(8);
    for (const u of shed) expect(await u.answer).toBe('HTTP/1.1 503 Service Unavailable');
    expect(peak).toBeLessThanOrEqual(DEFAULT_MAX_BUFFERED);
    for (const u of uploads) u.socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect(server.bufferedBytes).toBe(0);

    const review = readFileSync(new URL('../fixtures/admission/deployment-pod.json', import.meta.url), 'utf8');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, servername: 'localhost', path: '/mutate', method: 'POST', ca: ca.certPem, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      req.end(review);
    });
    expect(status).toBe(200);
  });
});
