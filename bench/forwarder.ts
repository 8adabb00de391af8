import { Agent, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import httpProxy from 'http-proxy';

/**
 * Baseline: the barest http-proxy forwarder (keep-alive pool, credential header,
 * `/bench` prefix stripped), so leash's own cost can be told apart from http-proxy's.
 * Usage: node forwarder.js <upstream port> [listen port]; prints {"port":N}.
 */
const upstreamPort = Number(process.argv[2]);
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
const proxy = httpProxy.createProxyServer({ xfwd: false });
const target = { protocol: 'http:', host: '127.0.0.1', port: upstreamPort };
const headers = { authorization: `Bearer ${process.env.BENCH_KEY ?? ''}` };
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502).end();
  else res.destroy();
});
const server = createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
  req.url = (req.url ?? '/').replace(/^\/bench/, '');
  proxy.web(req, res, { target, agent, headers });
});
server.listen(Number(process.argv[3] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
