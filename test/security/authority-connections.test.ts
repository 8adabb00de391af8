import { get } from 'node:https';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { sleep, waitFor } from '../helpers/wait.js';

/**
 * The authority's listener against a peer with no identity that only opens connections:
 * nothing capped them (a TCP connection that never sent a ClientHello was kept 120 s),
 * so enough of them used up the process's file descriptors and every sidecar's call was
 * reset. Now `connections.perAddress` from one client address, `maxConnections` in all,
 * and `handshakeTimeout` to finish the TLS handshake.
 */
let authority: TestAuthority | undefined;
const held: Socket[] = [];
afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  await authority?.stop();
  authority = undefined;
});

function hold(port: number, localAddress = '127.0.0.1'): Promise<{ socket: Socket; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const opened = performance.now();
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    held.push(socket);
    const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now() - opened)));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed }));
    socket.once('error', reject);
  });
}

function healthz(port: number, caPem: string, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/healthz', ca: caPem, servername: 'localhost', localAddress, agent: false, timeout: 3_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

const portOf = (a: TestAuthority) => Number(new URL(a.url).port);
const BASE = { credentials: { search: { kind: 'jwt', audience: 'search-api' } }, policies: [{ identities: ['join:*'], credentials: ['search'] }] };

describe('authority connections', () => {
  it('perAddress 5: a sixth idle connection from that address is closed at once; another address is served; freed slots are usable again', async () => {
    authority = await startAuthority({ ...BASE, connections: { perAddress: 5, handshakeTimeout: '30s' } });
    const port = portOf(authority);
    const five = await Promise.all(Array.from({ length: 5 }, () => hold(port)));
    const sixth = await hold(port);
    expect(await Promise.race([sixth.closed.then(() => 'closed'), sleep(2_000).then(() => 'open')])).toBe('closed');
    for (const h of five) expect(h.socket.destroyed).toBe(false);
    expect(await healthz(port, authority.caPem, '127.0.0.2')).toBe(200);
    expect(await healthz(port, authority.caPem, '127.0.0.1')).toBe(0);
    for (const h of five) h.socket.destroy();
    await waitFor(async () => (await healthz(port, authority!.caPem, '127.0.0.1')) === 200, { timeoutMs: 3_000, intervalMs: 50 });
  });

  it('maxConnections 4: the fifth connection from any address is refused', async () => {
    authority = await startAuthority({ ...BASE, connections: { maxConnections: 4, perAddress: 0, handshakeTimeout: '30s' } });
    const port = portOf(authority);
    await Promise.all([hold(port), hold(port, '127.0.0.2'), hold(port, '127.0.0.3'), hold(port, '127.0.0.4')]);
    const fifth = await hold(port, '127.0.0.5');
    expect(await Promise.race([fifth.closed.then(() => 'closed'), sleep(2_000).then(() => 'open')])).toBe('closed');
  });

  it('handshakeTimeout 300ms: a connection that never sends a ClientHello is closed after it, not after Node\'s 120 s', async () => {
    authority = await startAuthority({ ...BASE, connections: { handshakeTimeout: '300ms' } });
    const silent = await hold(portOf(authority));
    const ms = await Promise.race([silent.closed, sleep(5_000).then(() => Infinity)]);
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(5_000);
  });

  it('the defaults: 10,000 in all, 1,000 per address, 10 s to finish a handshake', async () => {
    authority = await startAuthority(BASE);
    expect(authority.running.server.server.maxConnections).toBe(10_000);
    const silent = await hold(portOf(authority));
    expect(await Promise.race([silent.closed.then(() => 'closed'), sleep(1_000).then(() => 'open')])).toBe('open');
  });
});
