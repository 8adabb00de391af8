import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyStand } from '../helpers/in-process-proxy.js';
import { HandsOutAnything, routeFor } from '../helpers/passes.js';
import { sleep } from '../helpers/wait.js';

/**
 * connections.proxy.maxConnections: Node refuses connections past the limit itself; leash
 * says so in its log, one warning a second at most however hard the flood (server.ts 'drop').
 */
const stand = new ProxyStand();
afterEach(() => stand.teardown());

/** A connection, resolved once it is closed or has stayed open for `ms`: whether the listener closed it. */
function attempt(port: number, ms = 300): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    stand.sockets.push(sock);
    sock.on('error', () => undefined);
    const t = setTimeout(() => resolve(false), ms);
    sock.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

describe('connections refused at maxConnections', () => {
  it('are logged once a second at most, with the limit, however many are refused', async () => {
    const upstream = await stand.upstream((_req, res) => res.end('ok'));
    const route = routeFor(upstream.url, new HandsOutAnything(undefined));
    const { port, logs: sink } = await stand.start(route, { now: () => 0, level: 'debug', limits: { maxConnections: 1, idleTimeout: 30_000 } });
    expect(await attempt(port)).toBe(false); // the one allowed, kept open
    const refused = await Promise.all(Array.from({ length: 6 }, () => attempt(port)));
    expect(refused).toEqual(Array(6).fill(true));
    await sleep(50);
    const lines = sink.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.msg === 'agent connections refused: listener at maxConnections');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.maxConnections).toBe(1);
    expect(lines[0]!.level).toBe('warn');
  });
});
