import type { Server } from 'node:net';
import type { AddressInfo } from 'node:net';

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
