import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of Redis for the bus tests, able to misbehave like a network:
 * - `partition()`: stop forwarding in both directions *without closing* anything (a
 *   partitioned link: nothing arrives, nothing fails); closes seen meanwhile and new
 *   connections are held until `heal()`, as the other side would not learn of them;
 * - `heal()`: forward again; held closes are propagated, held connections connected;
 *   `heal({ old: false })`: only connections accepted from now on work, the others stay
 *   silent forever (the client must notice by itself);
 * - `pauseReads()` / `resumeReads()`: stop reading what Redis sends (a stalled
 *   subscriber: Redis' output buffer for it grows until its limit cuts it off);
 * - `cutAll()`: destroy every connection.
 */
export interface BusProxy {
  port: number;
  url: string;
  /** Connections accepted so far. */
  accepted: number;
  /** Pairs currently open. */
  open(): number;
  partition(): void;
  heal(opts?: { old?: boolean }): void;
  pauseReads(): void;
  resumeReads(): void;
  cutAll(): void;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | undefined;
  blocked: boolean;
  deferred: (() => void)[];
}

export async function startBusProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<BusProxy> {
  const pairs = new Set<Pair>();
  let partitioned = false;
  let readsPaused = false;
  const later = (pair: Pair, fn: () => void) => (pair.blocked ? pair.deferred.push(fn) : fn());

  const connectUpstream = (pair: Pair) => {
    if (pair.client.destroyed) return;
    const up = createConnection({ host: targetHost, port: targetPort });
    pair.upstream = up;
    up.on('data', (d) => later(pair, () => pair.client.destroyed || pair.client.write(d)));
    pair.client.on('data', (d) => later(pair, () => up.destroyed || up.write(d)));
    const closeBoth = () => {
      pair.client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    up.on('error', () => later(pair, closeBoth));
    up.on('close', () => later(pair, closeBoth));
    pair.client.on('error', () => later(pair, closeBoth));
    pair.client.on('close', () => later(pair, closeBoth));
    if (readsPaused) up.pause();
    if (!pair.blocked) pair.client.resume();
  };

  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    proxy.accepted++;
    const pair: Pair = { client, upstream: undefined, blocked: partitioned, deferred: [] };
    pairs.add(pair);
    client.on('error', () => undefined);
    later(pair, () => connectUpstream(pair));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;

  const proxy: BusProxy = {
    port,
    url: `redis://127.0.0.1:${port}`,
    accepted: 0,
    open: () => pairs.size,
    partition() {
      partitioned = true;
      for (const p of pairs) {
        p.blocked = true;
        p.client.pause();
        p.upstream?.pause();
      }
    },
    heal(opts = {}) {
      partitioned = false;
      if (opts.old === false) return;
      for (const p of pairs) {
        p.blocked = false;
        const run = p.deferred;
        p.deferred = [];
        for (const fn of run) fn();
        p.client.resume();
        if (!readsPaused) p.upstream?.resume();
      }
    },
    pauseReads() {
      readsPaused = true;
      for (const p of pairs) p.upstream?.pause();
    },
    resumeReads() {
      readsPaused = false;
      for (const p of pairs) p.upstream?.resume();
    },
    cutAll() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream?.destroy();
      }
      pairs.clear();
    },
    async close() {
      proxy.cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}
