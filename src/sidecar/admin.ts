import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { capConnections, closeNow, listen } from '../core/listen.js';
import { listenerOptions, type ListenerLimits } from './listener-limits.js';
import { isLocalAddressOf } from './local-share.js';
import { hostAnswered, NO_CLIENT_NAMES, type ClientNames } from './proxy/browser-guard.js';

/**
 * The admin listener: /healthz (process alive), /readyz (started, every required route
 * holds a usable credential, and leash is not shutting down; see readiness.ts), /status (what is held, by fingerprint —
 * never a value) and /metrics.
 */
export interface AdminSource {
  ready(): { ready: boolean; unavailable: string[]; shuttingDown: boolean };
  status(): unknown;
  registry: Registry;
}

export const DEFAULT_ADMIN_LIMITS: ListenerLimits = { maxConnections: 64, idleTimeout: 10_000 };

export class AdminServer {
  readonly server: Server;
  constructor(
    source: AdminSource,
    limits: ListenerLimits = DEFAULT_ADMIN_LIMITS,
    isLocal: (address: string | undefined) => boolean = isLocalAddressOf(),
    clients: ClientNames = NO_CLIENT_NAMES,
  ) {
    // Admin requests are small GETs: the body (if any) is bounded like the headers.
    this.server = createServer(listenerOptions(limits, limits.idleTimeout), (req, res) => {
      const json = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(text);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed' });
      // A web page that pointed a DNS name of its own here would read /status and /metrics (proxy/browser-guard.ts).
      if (!hostAnswered(req.headers.host, clients)) return json(403, { error: 'the Host header names a host this sidecar is not reached by: name it in clients.hosts' });
      const path = (req.url ?? '/').split('?')[0];
      switch (path) {
        case '/healthz':
          return json(200, { status: 'ok' });
        case '/readyz': {
          const r = source.ready();
          return json(r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', ...r });
        }
        case '/status':
          return json(200, source.status());
        case '/metrics':
          source.registry.metrics().then(
            (text) => {
              res.writeHead(200, { 'content-type': source.registry.contentType });
              res.end(text);
            },
            () => json(500, { error: 'metrics collection failed' }),
          );
          return;
        default:
          return json(404, { error: 'not found', paths: ['/healthz', '/readyz', '/status', '/metrics'] });
      }
    });
    this.server.maxConnections = limits.maxConnections;
    // Half for this host's own processes (the agent among them), half for probes from elsewhere.
    capConnections(this.server, Math.max(1, Math.floor(limits.maxConnections / 2)), (a) => (isLocal(a) ? 'local' : undefined));
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listen(this.server, host, port);
  }

  close(): Promise<void> {
    return closeNow(this.server);
  }
}
