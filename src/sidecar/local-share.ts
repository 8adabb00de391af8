import { networkInterfaces } from 'node:os';
import type { Server, Socket } from 'node:net';

/**
 * The admin listener's share for its own host's processes. The agent shares the sidecar's
 * network: holding every admin connection (a byte every few seconds each) it made the
 * kubelet's liveness probes fail, so the sidecar was restarted (and its anomaly baseline
 * forgotten). Connections from this host's own addresses (loopback, and the pod's or
 * machine's interface addresses) get at most half of `maxConnections`; the other half is
 * kept for peers elsewhere (the kubelet, Prometheus). Where the listener is on loopback
 * only, every client is local and half the connections are all it offers.
 */
export function isLocalAddressOf(interfaces: ReturnType<typeof networkInterfaces> = networkInterfaces()): (address: string | undefined) => boolean {
  const own = new Set<string>();
  for (const list of Object.values(interfaces)) for (const i of list ?? []) own.add(i.address);
  return (address) => {
    if (address === undefined) return true;
    const a = address.startsWith('::ffff:') ? address.slice(7) : address;
    return a.startsWith('127.') || a === '::1' || own.has(a);
  };
}

/** Close, as they arrive, connections from local addresses beyond `max` held at once. */
export function capLocalConnections(server: Server, max: number, isLocal: (address: string | undefined) => boolean): void {
  let local = 0;
  server.on('connection', (socket: Socket) => {
    if (!isLocal(socket.remoteAddress)) return;
    if (local >= max) return void socket.destroy();
    local++;
    socket.once('close', () => local--);
  });
}
