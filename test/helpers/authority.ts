import type { AddressInfo } from 'node:net';
import { createAuthority, type AuthorityInputs, type RunningAuthority } from '../../src/authority/assemble.js';
import type { AuthorityStore } from '../../src/authority/leases/types.js';
import { authoritySchema } from '../../src/config/authority.js';
import { parseConfig } from '../../src/config/load.js';
import type { Clock } from '../../src/core/clock.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { LogSink } from './harness.js';

/** An in-process authority on a free port, with a generated CA, captured logs and an admin token. */
export const ADMIN_TOKEN = 'test-admin-token-not-a-secret-0123456789';

export interface TestAuthority {
  running: RunningAuthority;
  url: string;
  caPem: string;
  logs: LogSink;
  /** A one-time join token for identity NAME. */
  token(name: string, ttlMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startAuthority(
  config: Record<string, unknown>,
  options: { env?: Record<string, string>; store?: AuthorityStore; clock?: Clock; port?: number; kubernetes?: AuthorityInputs['kubernetes'] } = {},
): Promise<TestAuthority> {
  const env = options.env ?? {};
  const parsed = parseConfig(authoritySchema, JSON.stringify({ listen: `127.0.0.1:${options.port ?? 0}`, hostnames: ['127.0.0.1', 'localhost'], ...config }), env);
  const logs = new LogSink();
  const logger = createLogger({ level: 'debug', destination: logs });
  const running = await createAuthority({
    config: parsed,
    env,
    adminToken: ADMIN_TOKEN,
    secret: (s) => ('env' in s ? (env[s.env] ?? '') : ''),
    files: new Map(),
    logger,
    clock: options.clock,
    store: options.store,
    kubernetes: options.kubernetes,
  });
  const addr: AddressInfo = await running.server.listen(parsed.listen.host, parsed.listen.port);
  return {
    running,
    url: `https://127.0.0.1:${addr.port}`,
    caPem: running.ca.caPem,
    logs,
    token: async (name, ttlMs = 600_000) => (await running.authority.createJoinToken('test', name, ttlMs)).token,
    stop: () => running.close(),
  };
}
