import type { ServerOptions } from 'node:http';

/**
 * Connection limits of a listener (proxy and admin): how many connections it holds at
 * once and how long a connection may take to deliver a request's headers.
 *
 * What Node 20 does on its own, measured with raw sockets (test/security/listeners.test.ts):
 * - `headersTimeout` (default 60s) runs from the moment the connection is accepted, so it
 *   covers both a socket that never sends a byte and headers that never complete; Node
 *   answers `408` and closes. It is only checked every `connectionsCheckingInterval`
 *   (default 30s), so the defaults let a silent socket live up to 90s.
 * - `requestTimeout` (default 300s) bounds the whole request *including its body*: it cuts
 *   a legitimate slow upload after 5 minutes. It does not touch the response, so it never
 *   cuts a long SSE stream.
 * - `keepAliveTimeout` closes a connection idle between requests; `server.timeout` is 0
 *   (off), and would cut quiet SSE streams if set, so it stays off.
 * leash therefore sets `headersTimeout` to its idle timeout with a checking interval fine
 * enough to honour it, and on the proxy turns `requestTimeout` off: a stalled upload is
 * bounded by the route's upstream `timeouts.idle` (the upstream socket sees no bytes).
 */
export interface ListenerLimits {
  readonly maxConnections: number;
  /** Longest wait, from accept (or the end of the previous response), for complete request headers. */
  readonly idleTimeout: number;
}

/** The createServer options that implement `limits`. `bodyTimeout` 0 = no limit on reading a body. */
export function listenerOptions(limits: ListenerLimits, bodyTimeout: number): ServerOptions {
  const headersTimeout = limits.idleTimeout;
  return {
    headersTimeout,
    // Node requires requestTimeout ≥ headersTimeout unless it is off.
    requestTimeout: bodyTimeout === 0 ? 0 : Math.max(bodyTimeout, headersTimeout),
    // Expired connections are found by a periodic sweep: run it often enough that the
    // timeout is honoured within a quarter of itself (at most once a second: the sweep
    // walks the connections that are waiting for a request).
    connectionsCheckingInterval: Math.min(1_000, Math.max(10, Math.floor(headersTimeout / 4))),
    // A keep-alive connection idle between requests: never longer than the idle timeout.
    keepAliveTimeout: Math.min(5_000, headersTimeout),
  };
}
