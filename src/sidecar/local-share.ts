import { networkInterfaces } from 'node:os';
import { plainAddress } from '../core/listen.js';

/**
 * Which peers are this host's own processes, for the admin listener's share of them
 * (admin.ts). The agent shares the sidecar's network: holding every admin connection (a byte every few seconds each) it made the
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
    const a = plainAddress(address);
    return a.startsWith('127.') || a === '::1' || own.has(a);
  };
}
