import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { closeNow, listen } from '../../core/listen.js';

/**
 * The authority's `/metrics` on a listener of its own (`metrics.listen`), plain HTTP, for
 * Prometheus: the API port admits every sidecar pod, and an agent shares its sidecar's
 * network, so on the API port any agent could read every credential's name from the
 * per-credential series. Here a NetworkPolicy can admit the monitoring namespace alone.
 * GET /metrics and GET /healthz only; small and strict limits (a scraper sends one short
 * request at a time).
 */
export class MetricsListener {
  private readonly server: Server;

  constructor(registry: Registry) {
    this.server = createServer({ headersTimeout: 5_000, requestTimeout: 10_000 }, (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === '/metrics') {
        void registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': registry.contentType });
            res.end(text);
          },
          () => {
            res.writeHead(500, { 'content-type': 'text/plain' });
            res.end('metrics unavailable\n');
          },
        );
        return;
      }
      if (req.method === 'GET' && path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end('{"status":"ok"}');
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: this listener serves GET /metrics and /healthz only\n');
    });
    this.server.maxConnections = 64;
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listen(this.server, host, port);
  }

  close(): Promise<void> {
    return closeNow(this.server);
  }
}
