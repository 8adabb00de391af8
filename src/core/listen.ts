import type { Server, Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/** A peer's address as one bucket: IPv4-mapped IPv6 counts as the IPv4 address. */
export const plainAddress = (address: string | undefined): string => {
  const a = address ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
};

/**
 * At most `max` connections held at once per bucket: `bucketOf` names a connection's
 * bucket from its peer address, or undefined to leave it uncounted. Connections beyond are
 * closed as they arrive. (The authority: one bucket per client address; the admin
 * listener: one for this host's own addresses.)
 */
export function capConnections(server: Server, max: number, bucketOf: (address: string | undefined) => string | undefined): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const bucket = bucketOf(socket.remoteAddress);
    if (bucket === undefined) return;
    const n = (open.get(bucket) ?? 0) + 1;
    if (n > max) return void socket.destroy();
    open.set(bucket, n);
    socket.once('close', () => {
      const left = (open.get(bucket) ?? 1) - 1;
      if (left <= 0) open.delete(bucket);
      else open.set(bucket, left);
    });
  });
}

/** Stop accepting and cut every connection now (a listener whose requests are all short: admin, metrics). */
export function closeNow(server: import('node:http').Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Listen on host:port (0 = any free port) and resolve with the bound address; reject on a bind error. */
export function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** What a bind error means, in words an operator acts on. */
const BIND_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available on this host',
  EACCES: 'permission denied (ports below 1024 need privileges)',
};

/**
 * The one-line error for a listener that could not be bound: which listener, which
 * address, why, and the key or variable that moves it (`movedBy`, from the entry point:
 * it alone knows whether that is a config key, an environment variable or both).
 */
export function listenErrorMessage(err: unknown, what: string, host: string, port: number, movedBy: string): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? 'error';
  const why = BIND_ERRORS[code] ?? 'cannot bind';
  const addr = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return `cannot listen on ${addr} for the ${what}: ${why} (${code}); set ${movedBy} to a free host:port`;
}
