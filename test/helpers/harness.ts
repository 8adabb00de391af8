import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';

/** Real servers on port 0 and an in-process sidecar whose every log line is captured. */

export interface Upstream {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void, server: Server = createServer()): Promise<Upstream> {
  server.on('request', handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const proto = server instanceof HttpsServer ? 'https' : 'http';
  return {
    server,
    port,
    url: `${proto}://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

export class LogSink extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(line);
    done();
  }
  events(name: string): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === name);
  }
}

export interface RunningSidecar {
  sidecar: Sidecar;
  /** http://127.0.0.1:PORT — the agent-facing base. */
  url: string;
  adminUrl: string;
  logs: LogSink;
  stop(): Promise<void>;
}

/**
 * A route that injects `authorization: Bearer <value of KEY>` (a static credential from the
 * environment variable KEY), as most security tests use: `startSidecar({ routes: { api:
 * bearerRoute(up.url, ['GET /v1/**']) } }, { env: { KEY: SECRET } })`.
 */
export function bearerRoute(upstream: string, allow: readonly string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { upstream, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow, ...extra };
}

/** Start a sidecar from a config object (as YAML would give), on ports chosen by the OS. */
export async function startSidecar(
  config: Record<string, unknown>,
  options: { env?: Record<string, string>; caFiles?: Map<string, string>; authorityCa?: string; joinToken?: () => string | undefined } = {},
): Promise<RunningSidecar> {
  const env = options.env ?? {};
  const parsed = parseConfig(
    sidecarSchema,
    JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', shutdown: { grace: '2s' }, ...config }),
    env,
  );
  const logs = new LogSink();
  const logger = createLogger({ level: 'debug', destination: logs });
  const sidecar = new Sidecar({
    config: parsed,
    env,
    caFiles: options.caFiles ?? new Map(),
    logger,
    audit: createAudit(logger),
    authorityCa: options.authorityCa,
    joinToken: options.joinToken,
  });
  const addrs = await sidecar.start();
  return {
    sidecar,
    url: `http://127.0.0.1:${addrs.proxy.port}`,
    adminUrl: `http://127.0.0.1:${addrs.admin.port}`,
    logs,
    stop: () => sidecar.stop(),
  };
}
