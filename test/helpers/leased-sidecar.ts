import type { MemoryRevocationBus } from '../../src/bus/memory.js';
import { parseConfig } from '../../src/config/load.js';
import { sidecarSchema } from '../../src/config/sidecar.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { createAudit } from '../../src/telemetry/audit.js';
import { createLogger } from '../../src/telemetry/logger.js';
import type { TestAuthority } from './authority.js';
import { LogSink } from './harness.js';

/** A leased route: `credential` at the authority, injected as a Bearer token, GET allowed unless `allow` says otherwise. */
export const leasedRoute = (upstream: string, credential: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  upstream,
  credential,
  inject: { header: 'authorization', format: 'Bearer {{credential}}' },
  allow: ['GET /**'],
  ...extra,
});

/**
 * A sidecar built in process (not started), leasing from `authority` as `agent-1` with a
 * fresh join token, on loopback ports chosen by the OS, revocations from `bus` (by default
 * the authority's own in-process bus; `opts.revocations`: a config revocations section instead),
 * its log kept in `logs` (`opts.logs` if given). `extra` adds or replaces
 * top-level config keys (rotation, shutdown…).
 */
export async function leasedSidecar(
  authority: TestAuthority,
  routes: Record<string, Record<string, unknown>>,
  opts: { bus?: MemoryRevocationBus; extra?: Record<string, unknown>; level?: 'debug' | 'info' | 'warn'; logs?: LogSink; revocations?: Record<string, unknown> } = {},
): Promise<{ sidecar: Sidecar; logs: LogSink }> {
  const token = await authority.token('agent-1');
  const logs = opts.logs ?? new LogSink();
  const logger = createLogger({ level: opts.level ?? 'info', destination: logs });
  const config = {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    shutdown: { grace: '1s' },
    ...opts.extra,
    authority: { url: authority.url, caFile: 'ca.pem', bootstrap: { joinToken: { env: 'JT' } } },
    routes,
    ...(opts.revocations ? { revocations: opts.revocations } : {}),
  };
  const sidecar = new Sidecar({
    config: parseConfig(sidecarSchema, JSON.stringify(config), {}),
    env: {},
    caFiles: new Map(),
    logger,
    audit: createAudit(logger),
    authorityCa: authority.caPem,
    joinToken: () => token,
    // `opts.revocations`: the config's Redis channel instead of the authority's in-process bus.
    revocationBus: opts.revocations ? undefined : (opts.bus ?? (authority.running.revocations as MemoryRevocationBus)),
  });
  return { sidecar, logs };
}

export interface SidecarStatus {
  instance: { identity: string };
  routes: Record<string, { lease: string | null }>;
}

/** The sidecar's /status on its admin port. */
export async function statusOf(adminPort: number): Promise<SidecarStatus> {
  return (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as SidecarStatus;
}
