import { Agent as HttpAgent, type AgentOptions, type ClientRequest, type IncomingMessage } from 'node:http';
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

/**
 * A request beyond `maxSockets` waits in the Agent's `requests` queue until a socket frees
 * up, destroyed or not, with all it holds (its head, the agent's request and response).
 * http-proxy makes the request inside `proxy.web` and hands it out only once it has a
 * socket, so the pool notes the last request it was given: the proxy takes it right after
 * the call (takeLastRequest) and withdraws it when its agent goes away (withdrawRequest).
 * Without that, an agent could queue requests and close their connections without bound
 * while the route's sockets were busy.
 */
const LAST = Symbol('leash.lastRequest');
type NotingAgent = HttpAgent & { [LAST]?: ClientRequest | undefined };
const agentAddRequest = (HttpAgent.prototype as unknown as { addRequest(req: ClientRequest, options: object): void }).addRequest;

function addRequest(agent: NotingAgent, req: ClientRequest, options: object): void {
  agent[LAST] = req;
  agentAddRequest.call(agent, req, options);
}

/** The request the pool was last given (once: the note is cleared), if it is one of leash's pools. */
export function takeLastRequest(agent: HttpAgent): ClientRequest | undefined {
  const a = agent as NotingAgent;
  const req = a[LAST];
  a[LAST] = undefined;
  return req;
}

/** Ends `req`, taking it out of the pool's queue if it is still waiting there for a socket. */
export function withdrawRequest(agent: HttpAgent, req: ClientRequest): void {
  if (!req.socket) {
    const queues = agent.requests as Record<string, ClientRequest[] | undefined>;
    for (const [name, queue] of Object.entries(queues)) {
      const at = queue?.indexOf(req) ?? -1;
      if (at === -1) continue;
      queue!.splice(at, 1);
      if (queue!.length === 0) delete queues[name];
    }
  }
  req.destroy();
}

class UpstreamHttpAgent extends HttpAgent {
  override keepSocketAlive(socket: Duplex): boolean {
    return keepSocketAlive(this, socket as PooledSocket);
  }
  addRequest(req: ClientRequest, options: object): void {
    addRequest(this, req, options);
  }
}

class UpstreamHttpsAgent extends HttpsAgent {
  override keepSocketAlive(socket: Duplex): boolean {
    return keepSocketAlive(this, socket as PooledSocket);
  }
  addRequest(req: ClientRequest, options: object): void {
    addRequest(this, req, options);
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
