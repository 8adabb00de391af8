import type { IncomingMessage, RequestListener, Server as HttpServer } from 'node:http';
import { type AddressInfo, connect, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenerLimits } from '../../src/sidecar/listener-limits.js';
import type { RouteRuntime } from '../../src/sidecar/proxy/route.js';
import { ProxyServer, type RequestOutcome } from '../../src/sidecar/proxy/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink, startUpstream, type Upstream } from './harness.js';
import { envFor } from './passes.js';

/**
 * An in-process ProxyServer (server.ts) on one route, for tests of the proxy listener
 * without a sidecar around it: upstreams, the proxy, raw agent connections, and what the
 * proxy reported (request outcomes, upstream auth failures, log lines). A test file makes
 * one stand and tears it down after each test:
 *
 *   const stand = new ProxyStand();
 *   afterEach(() => stand.teardown());
 *
 *   const upstream = await stand.upstream((_req, res) => res.end('ok'));
 *   const { port, outcomes } = await stand.start(routeFor(upstream.url, new HandsOutAnything(cred())));
 *   const agent = await stand.open(port);
 */

export interface StartOptions {
  /** The clock the passes see (envFor); `() => 1_000` unless given. */
  now?: () => number;
  /** The logger's level: 'silent' unless the test reads the log lines. */
  level?: 'silent' | 'debug';
  /** The listener's limits (ProxyServer's fourth argument); leash's defaults unless given. */
  limits?: ListenerLimits;
}

export interface InProcessProxy {
  proxy: ProxyServer;
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** Each request's outcome, in the order hooks.requestDone reported them. */
  outcomes: RequestOutcome[];
  /** The status of each upstream auth failure (hooks.upstreamAuthFailure). */
  authFailures: number[];
  /** Every log line, as written. */
  logs: LogSink;
  /** The log lines so far, parsed. */
  lines(): Record<string, unknown>[];
}

/** A raw agent connection: the socket, everything read back on it (latin1), and its close. */
export interface Agent {
  sock: Socket;
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
}

/** What `exchange` read: the text, whether the connection was closed, and its socket. */
export interface Exchanged {
  text: string;
  closed: boolean;
  sock: Socket;
}

/** The 101 an upstream that takes every WebSocket upgrade answers (acceptUpgrades). */
const SWITCHED = 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: x\r\n\r\n';

/**
 * Everything one test starts, ended by teardown() in this order: the sockets (agents' and
 * upstreams'), the proxy (close(0)), the upstreams and other servers (in the order they
 * were started), the route.
 */
export class ProxyStand {
  /** Destroyed first at teardown: each agent connection, and any socket a test adds. */
  readonly sockets: Array<Socket | Duplex> = [];
  private proxy: ProxyServer | undefined;
  private route: RouteRuntime | undefined;
  private closers: Array<() => unknown> = [];

  /** An HTTP upstream on a port of its own (startUpstream), closed at teardown. */
  async upstream(handler: RequestListener): Promise<Upstream> {
    const upstream = await startUpstream(handler);
    this.closers.push(() => upstream.close());
    return upstream;
  }

  /**
   * Makes `server` (an upstream of its own kind, a side channel) listen on 127.0.0.1, on a
   * port of its own, and resolves with that port; it is closed at teardown (an HTTP server
   * after closing its connections, as startUpstream's).
   */
  async listen(server: NetServer | HttpServer): Promise<number> {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    this.closers.push(() => {
      if ('closeAllConnections' in server) server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    });
    return (server.address() as AddressInfo).port;
  }

  /** Makes `server` take every WebSocket upgrade: it records the request, answers SWITCHED and holds the socket. */
  acceptUpgrades(server: HttpServer, seen: IncomingMessage[] = []): void {
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      seen.push(req);
      this.sockets.push(socket);
      socket.on('error', () => undefined);
      socket.write(SWITCHED);
    });
  }

  /** A ProxyServer for `route` alone, listening on 127.0.0.1 (a port of its own); it and the route are closed at teardown. */
  async start(route: RouteRuntime, options: StartOptions = {}): Promise<InProcessProxy> {
    this.route = route;
    const outcomes: RequestOutcome[] = [];
    const authFailures: number[] = [];
    const logs = new LogSink();
    const proxy = new ProxyServer(
      envFor(route, options.now ?? (() => 1_000)),
      { requestDone: (o) => outcomes.push(o), upstreamAuthFailure: (_r, status) => authFailures.push(status) },
      createLogger({ level: options.level ?? 'silent', destination: logs }),
      options.limits,
    );
    this.proxy = proxy;
    const { port } = await proxy.listen('127.0.0.1', 0);
    const lines = () => logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    return { proxy, port, outcomes, authFailures, logs, lines };
  }

  /** A raw agent connection to `port`, kept open until teardown; `bytes` (if any) are written once it is connected. */
  connect(port: number, bytes?: string): Agent & { connected: Promise<void> } {
    const sock = connect(port, '127.0.0.1');
    this.sockets.push(sock);
    let text = '';
    let isClosed = false;
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => (text += c));
    sock.on('error', () => undefined);
    const closed = new Promise<void>((r) =>
      sock.once('close', () => {
        isClosed = true;
        r();
      }),
    );
    const connected = new Promise<void>((r) =>
      sock.once('connect', () => {
        if (bytes !== undefined) sock.write(bytes);
        r();
      }),
    );
    return { sock, received: () => text, closed, isClosed: () => isClosed, connected };
  }

  /** A raw agent connection to `port`, once it is connected (see connect). */
  async open(port: number): Promise<Agent> {
    const { connected, ...agent } = this.connect(port);
    await connected;
    return agent;
  }

  /**
   * Sends `bytes` on a new agent connection; resolves with what was read once `until` holds
   * of it, the connection is closed, or `ms` have passed (when given).
   */
  exchange(port: number, bytes: string, options: { until?: (text: string) => boolean; ms?: number } = {}): Promise<Exchanged> {
    return new Promise((resolve) => {
      const agent = this.connect(port, bytes);
      let timer: NodeJS.Timeout | undefined;
      const done = (closed: boolean) => {
        clearTimeout(timer);
        resolve({ text: agent.received(), closed, sock: agent.sock });
      };
      if (options.ms !== undefined) timer = setTimeout(() => done(false), options.ms);
      const { until } = options;
      if (until) agent.sock.on('data', () => void (until(agent.received()) && done(false)));
      agent.sock.once('close', () => done(true));
    });
  }

  /** Ends what the test started (see the class); the stand is ready for the next test. */
  async teardown(): Promise<void> {
    for (const s of this.sockets.splice(0)) s.destroy();
    await this.proxy?.close(0);
    for (const close of this.closers.splice(0)) await close();
    this.route?.close();
    this.proxy = this.route = undefined;
  }
}
