import { get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminServer } from '../../src/sidecar/admin.js';
import { isLocalAddressOf } from '../../src/sidecar/local-share.js';
import { sleep } from '../helpers/wait.js';

/**
 * The admin listener keeps half of its connections for peers elsewhere (the kubelet's
 * probes): an agent on the same host holding every connection made liveness probes fail
 * and the sidecar restart. Here 127.0.0.2 stands for the kubelet (a classifier that counts
 * only 127.0.0.1 as local); the real one counts loopback and the host's interface addresses.
 */
let admin: AdminServer | undefined;
const held: Socket[] = [];
afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  await admin?.close();
  admin = undefined;
});

function hold(port: number, localAddress: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    held.push(socket);
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () => {
      socket.write('G'); // a byte, then nothing: what an agent holding slots sends
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}

function healthz(port: number, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/healthz', localAddress, agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

describe('the admin listener\'s share for local clients', () => {
  it('maxConnections 8: local clients hold at most 4; a probe from elsewhere is still answered', async () => {
    const source = { ready: () => ({ ready: true, unavailable: [], shuttingDown: false }), status: () => ({}), registry: new Registry() };
    admin = new AdminServer(source, { maxConnections: 8, idleTimeout: 30_000 }, (a) => a === '127.0.0.1' || a === '::ffff:127.0.0.1');
    const { port } = await admin.listen('127.0.0.1', 0);
    const four = await Promise.all(Array.from({ length: 4 }, () => hold(port, '127.0.0.1')));
    const fifth = await hold(port, '127.0.0.1');
    expect(await Promise.race([fifth.closed.then(() => 'closed'), sleep(1_000).then(() => 'open')])).toBe('closed');
    for (const h of four) expect(h.socket.destroyed).toBe(false);
    expect(await healthz(port, '127.0.0.1')).toBe(0);
    for (let i = 0; i < 3; i++) expect(await healthz(port, '127.0.0.2')).toBe(200);
    four[0]!.socket.destroy();
    await four[0]!.closed;
    await sleep(50);
    expect(await healthz(port, '127.0.0.1')).toBe(200);
  });

  it('local means loopback and this host\'s own interface addresses', () => {
    const isLocal = isLocalAddressOf({ eth0: [{ address: '10.1.2.3', netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: '10.1.2.3/24' }] });
    for (const a of ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1', '10.1.2.3', '::ffff:10.1.2.3', undefined]) expect(isLocal(a), String(a)).toBe(true);
    for (const a of ['10.1.2.1', '192.168.0.7', 'fe80::1']) expect(isLocal(a), a).toBe(false);
  });
});
