import { createServer } from 'node:net';

/**
 * A loopback port that was free a moment ago, for a server that a test starts later (a
 * redis-server, a stand-in API server: processes that cannot report a `listen(0)` port).
 * Chosen below Linux's ephemeral range (32768-60999 by default), where every `listen(0)`
 * and outgoing connection of the other test files running meanwhile takes its ports: a
 * port from that range was taken by one of them before the server came up (EADDRINUSE,
 * seen in a full run). Callers that can still lose the race retry on another port.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const s = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((resolve) => s.close(() => resolve()));
      return port;
    }
    if (attempt >= 50) throw new Error('no free port found below the ephemeral range in 50 tries');
  }
}
