import { Agent as HttpAgent, type AgentOptions, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, type AgentOptions as HttpsAgentOptions } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * A route's upstream connection pool: Node's keep-alive Agent, with one change — when a
 * socket goes back to the pool, the upstream's `Keep-Alive: timeout=N` hint is read from
 * the answer's raw headers. Node's own keepSocketAlive reads `res.headers['keep-alive']`,
 * which makes Node build the answer's parsed `headers` object (≈ 8k instructions per
 * answer, issue 11) that the proxy path otherwise never needs (response.ts reads the raw
 * headers). Same decisions as Node 20's Agent#keepSocketAlive (an overridable method, per
 * Node's docs), pinned against it in test/unit/pool.test.ts.
 */

/** Node's margin: the pool drops a socket this long before the upstream's announced timeout. */
const KEEP_ALIVE_TIMEOUT_BUFFER_MS = 1_000;

/**
 * Pure: the first `Keep-Alive` value of an answer, as Node's parsed headers give it (Node
 * joins repeated lines with ", ", so the hint at their start is the first line's).
 */
export function keepAliveValue(rawHeaders: readonly string[]): string | undefined {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 10 && (name === 'keep-alive' || name === 'Keep-Alive' || name.toLowerCase() === 'keep-alive')) return rawHeaders[i + 1];
  }
  return undefined;
}

interface PooledSocket extends Socket {
  _httpMessage?: { res?: Pick<IncomingMessage, 'rawHeaders'> | null } | null;
  timeout?: number;
}

/** Node 20's keepSocketAlive, the hint read from the raw headers. */
function keepSocketAlive(agent: HttpAgent, socket: PooledSocket): boolean {
  const { keepAliveMsecs, options } = agent as unknown as { keepAliveMsecs: number; options: { timeout?: number } };
  socket.setKeepAlive(true, keepAliveMsecs);
  socket.unref();
  let agentTimeout = options.timeout || 0;
  let keep = true;
  const res = socket._httpMessage?.res;
  if (res) {
    const hint = keepAliveValue(res.rawHeaders);
    const seconds = hint ? /^timeout=(\d+)/.exec(hint)?.[1] : undefined;
    if (seconds) {
      let serverHint = Number.parseInt(seconds, 10) * 1000 - KEEP_ALIVE_TIMEOUT_BUFFER_MS;
      serverHint = serverHint > 0 ? serverHint : 0;
      if (serverHint === 0) keep = false;
      else if (serverHint < agentTimeout) agentTimeout = serverHint;
    }
  }
  if (socket.timeout !== agentTimeout) socket.setTimeout(agentTimeout);
  return keep;
}

class UpstreamHttpAgent extends HttpAgent {
  override keepSocketAlive(socket: Duplex): boolean {
    return keepSocketAlive(this, socket as PooledSocket);
  }
}

class UpstreamHttpsAgent extends HttpsAgent {
  override keepSocketAlive(socket: Duplex): boolean {
    return keepSocketAlive(this, socket as PooledSocket);
  }
}

/** The pool of one route: plain HTTP, or HTTPS with the given options (TLS verified by the caller's options). */
export function upstreamAgent(https: false, options: AgentOptions): HttpAgent;
export function upstreamAgent(https: true, options: HttpsAgentOptions): HttpsAgent;
export function upstreamAgent(https: boolean, options: AgentOptions | HttpsAgentOptions): HttpAgent;
export function upstreamAgent(https: boolean, options: AgentOptions | HttpsAgentOptions): HttpAgent {
  return https ? new UpstreamHttpsAgent(options) : new UpstreamHttpAgent(options);
}

/** For tests: the pool's keepSocketAlive as a function of an agent (pinned against Node's). */
export const keepSocketAliveFor = keepSocketAlive;
