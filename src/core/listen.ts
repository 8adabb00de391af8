import type { Server } from 'node:net';
import type { AddressInfo } from 'node:net';

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
