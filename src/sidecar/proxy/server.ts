import { createServer, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { BadRequestError, CredentialUnavailableError, type LeashHttpError, UpstreamBadResponseError, UpstreamTimeoutError, UpstreamUnreachableError } from '../../core/errors.js';
import type { HeldCredential } from '../credentials/types.js';
import { MAX_REQUEST_HEADERS, runHeadPasses, runSendPasses, type PassEnv, type RequestContext } from './passes.js';
import { readRequestBody } from './request-body.js';
import { bodyOverrideError, bodyScanner, OverrideGuard, overrideInBody } from './body-override.js';
import { PrefixResolver, type RouteResolver } from './resolve.js';
import { UpstreamTimeouts, type TimeoutEntry } from './timeouts.js';
import { endAndClose, sendError, sendSocketError } from './respond.js';
import { forwardResponse, scrubUpgradeHeaders, writeRawResponse, type ForwardOutcome } from './response.js';
import type { RouteRuntime } from './route.js';
import { listen } from '../../core/listen.js';
import { sharedLoopStall } from '../../core/loop-stall.js';
import { listenerOptions, type ListenerLimits } from '../listener-limits.js';
import { auditPath } from './audit-path.js';
import { NO_FRAMING } from './framing.js';
import { takeLastRequest, withdrawRequest } from './pool.js';
import { ignoredUpgrade, ProxyIncomingMessage } from './upgrade.js';

/**
 * The agent-facing reverse proxy. http-proxy 1.18.1 moves the bytes; everything that
 * decides anything happens before it is called (the passes) or after it answers
 * (forwardResponse). Around it, the fixes for its known faults (docs/pitfalls.md):
 * - the credential goes in `options.headers`, never in a `proxyReq` hook (pooled sockets
 *   and Expect: 100-continue sent requests without it);
 * - the upstream request is destroyed when the agent goes away (it only listens for
 *   `aborted`, which Node ≥ 16 no longer emits when a client disconnects);
 * - followRedirects is never enabled; the upstream path is built by the passes;
 * - both sides of a WebSocket are torn down together (its socket leak on Node ≥ 15.5);
 * - every error is handled: an unhandled http-proxy error would throw;
 * - nothing an upstream answers may throw out of a handler (that would end the process,
 *   and every route with it): a bad answer becomes leash_upstream_bad_response;
 * - its `deleteLength` pass is removed: leash frames every body itself (framing.ts), and
 *   that pass turns a chunked DELETE/OPTIONS into `Content-Length: 0` with the chunks
 *   still piped behind it, i.e. a smuggled request on the pooled socket.
 */
export interface RequestOutcome {
  route: string | undefined;
  method: string;
  path: string | undefined;
  status: number;
  durationMs: number;
  credential: HeldCredential | undefined;
  denied: LeashHttpError | undefined;
  /** The allow rule that matched, and the agent's address (anomaly detection). */
  rule?: string | undefined;
  remote?: string | undefined;
}

export interface ProxyHooks {
  requestDone(outcome: RequestOutcome): void;
  /** `credential` is the one the refused request carried (undefined if none was injected). */
  upstreamAuthFailure(route: RouteRuntime, status: number, credential: HeldCredential | undefined): void;
}

const CTX = Symbol('leash.ctx');
/**
 * Set on an agent socket once leash refused a malformed request on it. Node parses and
 * emits pipelined requests before the refusal's `connection: close` takes effect; none of
 * them is forwarded, since nothing after a mis-framed request can be trusted to be where
 * the agent's framing says it is.
 */
const POISONED = new WeakSet<object>();
/**
 * Requests an agent may pipeline behind the one being answered on a connection. Node parses
 * pipelined requests as they arrive, without a bound while the answer ahead has not started
 * (its pause only looks at response bytes queued): ~2.2 KB of heap for each 540-byte
 * request, 44 MB for 20,000 on one connection. Clients pipeline a few requests, if any;
 * beyond this the connection is closed.
 */
export const MAX_PIPELINED = 16;
/** Requests waiting for their turn, per agent connection. */
const waitingTurn = new WeakMap<object, number>();
type Tracked = RequestContext & {
  /** The agent's address (anomaly detection). */
  remote: string | undefined;
  /** Why leash answered the request itself, if it did. */
  denied: LeashHttpError | undefined;
  proxyReq: ClientRequest | undefined;
  proxyRes: IncomingMessage | undefined;
  /** The agent's response (plain requests), once forwarded. */
  res: ServerResponse | undefined;
  /** The upstream timeouts' entry (timeouts.ts), once forwarded. */
  timeout: TimeoutEntry<Tracked> | undefined;
  clientGone: boolean;
  timedOut: boolean;
  /** The credential stopped being sendable (revoked, or past its margin) before the upstream answered. */
  stale: boolean;
  /** The upstream's status (WebSocket path). */
  status: number | undefined;
};
type WithCtx = IncomingMessage & { [CTX]?: Tracked };

/**
 * Pure: the answer for an upstream request that failed before its response could be
 * relayed. HPE_* is Node's HTTP parser refusing the upstream's answer (bad status line,
 * header or framing): the upstream was reached, what it said cannot be relayed.
 */
export function upstreamFailure(err: Error, timedOut: boolean, route: string | undefined): LeashHttpError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  if (timedOut) return new UpstreamTimeoutError('the upstream did not answer in time', { route });
  if (code.startsWith('HPE_')) return new UpstreamBadResponseError(`the upstream answered a malformed HTTP response (${code})`, { route });
  return new UpstreamUnreachableError(`the upstream could not be reached (${code})`, { route }, { cause: err });
}

/** What the agent gets when its credential was revoked, or passed its margin, before the upstream answered. */
const staleAnswer = (route: string | undefined): LeashHttpError =>
  new CredentialUnavailableError('the credential was revoked or stopped being usable before the upstream answered', { route });

/** Whether SEND waits for the request-body phase (routes that inspect bodies); the WebSocket path has none. */
const hasBodyPhase = (route: RouteRuntime): boolean => route.bodyFilters.length > 0;
const noBodyPhase = (): boolean => false;

/** Client went away before the answer finished (nginx's 499). */
const CLIENT_CLOSED = 499;

export const DEFAULT_PROXY_LIMITS: ListenerLimits = { maxConnections: 512, idleTimeout: 30_000 };

/** Removes http-proxy's `deleteLength` web pass; throws if it is not where 1.18.1 keeps it (fail closed on an upgrade). */
function dropDeleteLengthPass(proxy: httpProxy): void {
  const passes = (proxy as unknown as { webPasses?: { name: string }[] }).webPasses;
  const at = passes?.findIndex((p) => p.name === 'deleteLength') ?? -1;
  if (at === -1) throw new Error('http-proxy internals changed: the deleteLength pass was not found (leash must own request framing)');
  passes!.splice(at, 1);
}

export class ProxyServer {
  readonly server: Server;
  // toProxy: the outgoing path is req.url as leash set it (the upstream path it matched),
  // not url.parse(req.url).path, which percent-escapes `'`, `"`, `^`, `{`, `|`, `}` and
  // more, and cuts at `#` (target.ts refuses `#` and the two urlJoin rewrites).
  private readonly proxy = httpProxy.createProxyServer({ xfwd: false, selfHandleResponse: true, ws: true, prependPath: false, toProxy: true });
  private inflight = 0;
  /** Open WebSockets: the agent's socket and its request's context. */
  private readonly upgraded = new Map<Duplex, Tracked>();
  private closing: Promise<void> | undefined;
  private idle: (() => void) | undefined;
  private readonly env: PassEnv;
  private readonly agentPath: RouteResolver['agentPath'];
  private readonly timeouts = new UpstreamTimeouts<Tracked>((ctx, proxyReq) => this.onTimeout(ctx, proxyReq));
  /** After a stall, requests wait one loop turn, so revocations that arrived meanwhile are applied first (loop-stall.ts). */
  private readonly stall = sharedLoopStall();

  constructor(
    env: PassEnv,
    private readonly hooks: ProxyHooks,
    private readonly log: Logger,
    limits: ListenerLimits = DEFAULT_PROXY_LIMITS,
  ) {
    const resolver = env.resolver ?? new PrefixResolver((name) => env.route(name));
    this.env = { ...env, resolver };
    this.agentPath = (route, rest) => resolver.agentPath(route, rest);
    dropDeleteLengthPass(this.proxy);
    // No limit on reading a body (slow uploads are legitimate; a stalled one is bounded by the route's upstream idle timeout).
    // ProxyIncomingMessage: an upgrade offer other than WebSocket (Java's h2c) is a plain request (upgrade.ts).
    this.server = createServer({ ...listenerOptions(limits, 0), IncomingMessage: ProxyIncomingMessage }, (req, res) => this.handle(req as WithCtx, res));
    this.server.maxConnections = limits.maxConnections;
    // Node's default, set explicitly: refuseSmuggling (passes.ts) refuses a request with more
    // header lines than req.headers holds (a framing header past it would be invisible there).
    this.server.maxHeadersCount = MAX_REQUEST_HEADERS;
    let lastDropLog = -Infinity;
    this.server.on('drop', () => {
      // Node closes the connection itself; one line a second at most, however hard the flood.
      if (performance.now() - lastDropLog < 1_000) return;
      lastDropLog = performance.now();
      this.log.warn({ maxConnections: limits.maxConnections }, 'agent connections refused: listener at maxConnections');
    });
    this.server.on('upgrade', (req: WithCtx, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head));
    // Without a 'connect' listener Node drops a CONNECT without a word; answer it as DESIGN §5 says.
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      sendSocketError(socket, new BadRequestError('CONNECT is not supported: leash is a reverse proxy'));
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) return void socket.destroy();
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        // connections.proxy.idleTimeout: no complete request headers in time (listener-limits.ts). As Node itself answers.
        endAndClose(socket, 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      const body = JSON.stringify({ error: { type: 'leash_bad_request', message: 'malformed HTTP request', route: null } });
      endAndClose(
        socket,
        `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-leash-error: leash_bad_request\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
      this.log.debug({ code: err.code }, 'malformed request refused');
    });
    this.proxy.on('proxyReq', (proxyReq: ClientRequest, req: WithCtx, res: ServerResponse) => this.onProxyReq(proxyReq, req, res));
    this.proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: WithCtx, socket: Duplex) => this.onProxyReqWs(proxyReq, req, socket));
    this.proxy.on('proxyRes', (proxyRes: IncomingMessage, req: WithCtx, res: ServerResponse) => {
      const ctx = req[CTX]!;
      ctx.proxyRes = proxyRes;
      const status = proxyRes.statusCode ?? 0;
      // An answer the framing says has no body (to HEAD; 204, 304): an upstream that sends one
      // anyway (a HEAD served by its GET handler, the body written after the head) has those
      // bytes arrive after Node has handed the socket to the next request queued for it, as
      // that request's answer — another agent's request, and every answer after it shifted
      // by one. Node only catches bytes that arrive with the head. Such a connection is
      // closed once the answer is in, never reused.
      if (req.method === 'HEAD' || status === 204 || status === 304) ctx.proxyReq!.shouldKeepAlive = false;
      if (status === 401 || status === 403) this.hooks.upstreamAuthFailure(ctx.route!, status, ctx.credential);
      const route = ctx.route!.name;
      try {
        this.noteOutcome(route, forwardResponse(proxyRes, res, ctx.route!, req.method ?? 'GET', ctx.route!.scrubberFor(ctx.credential), this.agentPath));
      } catch (err) {
        // Only the code is logged: a Node message can quote a header name or value.
        this.log.warn({ route, code: (err as NodeJS.ErrnoException).code ?? 'error' }, 'upstream answer could not be written');
        proxyRes.on('error', () => undefined).destroy();
        this.refuse(res, new UpstreamBadResponseError("the upstream's answer cannot be relayed", { route }));
      }
    });
    // Without a listener http-proxy throws; per-call callbacks below answer the agent.
    this.proxy.on('error', (err: Error) => this.log.warn({ err }, 'proxy error'));
    this.proxy.on('econnreset', () => undefined);
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listen(this.server, host, port);
  }

  get inFlight(): number {
    return this.inflight;
  }

  private newContext(req: IncomingMessage, upgrade: boolean): Tracked {
    return {
      startedAt: performance.now(),
      upgrade,
      // Read now: once the socket is gone Node no longer knows it (cached per connection).
      remote: req.socket.remoteAddress,
      denied: undefined,
      route: undefined,
      target: undefined,
      credential: undefined,
      rule: undefined,
      framing: NO_FRAMING,
      upstreamPath: '',
      outgoingHeaders: {},
      // Every field the request will get, declared here: one object shape from the start
      // (properties added later would move each context through a chain of hidden classes).
      proxyReq: undefined,
      proxyRes: undefined,
      res: undefined,
      timeout: undefined,
      clientGone: false,
      timedOut: false,
      stale: false,
      status: undefined,
    };
  }

  /** What both entry points share at the start: the context and the in-flight count. */
  private begin(req: WithCtx, upgrade: boolean): Tracked {
    const ctx = this.newContext(req, upgrade);
    req[CTX] = ctx;
    this.inflight++;
    return ctx;
  }

  /** What both share at the end: the outcome reported once, the in-flight count. */
  private finish(req: WithCtx, ctx: Tracked, status: number): void {
    if (ctx.timeout) this.timeouts.untrack(ctx.timeout);
    this.hooks.requestDone({
      route: ctx.route?.name,
      method: req.method ?? 'GET',
      path: ctx.target?.rawPath ?? auditPath(req.url),
      status,
      durationMs: performance.now() - ctx.startedAt,
      credential: ctx.credential,
      denied: ctx.denied,
      rule: ctx.rule?.text,
      remote: ctx.remote,
    });
    if (--this.inflight === 0) this.idle?.();
  }

  /**
   * The request-head phase (passes.ts DECIDE), then, unless the route inspects bodies
   * (request-body.ts), SEND. A request on a connection already refused as malformed is
   * refused again, unread.
   */
  private decide(req: WithCtx, ctx: Tracked, bodyPhase: boolean): LeashHttpError | undefined {
    if (POISONED.has(req.socket)) return new BadRequestError('a previous request on this connection was refused as malformed');
    return runHeadPasses(req, ctx, this.env, bodyPhase ? hasBodyPhase : noBodyPhase);
  }

  private handle(req: WithCtx, res: ServerResponse): void {
    // Pipelined behind a request not yet answered on this connection: Node hands over every
    // pipelined request at once and queues its response, which gets the socket (and so a
    // 'close' when the agent goes away) only when its turn comes. Taken up then, not now:
    // forwarded at once, it went upstream even if the agent had left, was never finished
    // (no audit line, usage or metric; the in-flight count kept it for good), and one
    // connection could put any number of requests in flight at once.
    if (res.socket === null) {
      const socket = req.socket;
      const waiting = (waitingTurn.get(socket) ?? 0) + 1;
      if (waiting > MAX_PIPELINED) {
        this.log.debug({ max: MAX_PIPELINED }, 'agent connection closed: too many pipelined requests');
        return void socket.destroy();
      }
      waitingTurn.set(socket, waiting);
      res.once('socket', () => {
        waitingTurn.set(socket, waitingTurn.get(socket)! - 1);
        this.handle(req, res);
      });
      return;
    }
    const ctx = this.begin(req, false);
    // An ignored upgrade offer (upgrade.ts): Node's parser dropped what followed it in that read.
    if (ignoredUpgrade(req)) res.shouldKeepAlive = false;
    // `on`, not `once`: a ServerResponse emits 'close' once (Node guards it with `_closed`),
    // and once() would wrap the listener in a state object and a bound function per request.
    res.on('close', () => {
      if (!res.writableFinished) {
        // The agent went away: cancel the upstream now so it stops generating (and billing),
        // or take the request out of the route's queue if it still waits for a socket there.
        ctx.clientGone = true;
        if (ctx.proxyReq) withdrawRequest(ctx.route!.agent, ctx.proxyReq);
      } else if (ctx.proxyReq !== undefined && !ctx.proxyReq.destroyed && !ctx.proxyReq.writableFinished) {
        // The upstream answered before the whole request body went out (an early 401 or
        // 413). It does not need the rest, and its connection is never reused: an upstream
        // that answered without reading the body would take the rest as its next request,
        // which leash's next request there would complete with the credential (a CL.0
        // desync). Node has also detached this request from the agent's connection, so it
        // would otherwise wait for the rest for ever, holding one of the route's sockets.
        withdrawRequest(ctx.route!.agent, ctx.proxyReq);
        // The rest of the body is read and dropped: the agent's connection stays usable.
        // Unpiped first: the destroyed upstream request's 'close' would unpipe it later and
        // pause it again, and a rest larger than the socket buffers then stalled the connection.
        req.unpipe();
        req.resume();
      }
      this.finish(req, ctx, res.writableFinished || res.headersSent ? res.statusCode : CLIENT_CLOSED);
    });
    if (this.stall.stalled(ctx.startedAt)) {
      setImmediate(() => {
        if (!ctx.clientGone) this.proceed(req, res, ctx);
      });
      return;
    }
    this.proceed(req, res, ctx);
  }

  /** DECIDE, the body phase if the route has one, SEND. */
  private proceed(req: WithCtx, res: ServerResponse, ctx: Tracked): void {
    const denied = (ctx.denied = this.decide(req, ctx, true));
    if (denied) return this.deny(req, res, denied);
    if (ctx.route!.bodyFilters.length > 0) {
      // Nothing may reject unhandled (that would end the process): an unforeseen throw cuts
      // this request's connection only (only the code is logged: a message may quote the body).
      this.inspectBody(req, res, ctx).catch((err: unknown) => {
        this.log.warn({ route: ctx.route?.name, code: (err as NodeJS.ErrnoException).code ?? 'error' }, 'request body phase failed: connection cut');
        res.destroy();
      });
      return;
    }
    // A POST body a framework reads a method override from (body-override.ts): looked at
    // on its way. Every other request (a GET has no body) pays one comparison.
    if (ctx.framing.kind !== 'none' && req.method === 'POST') return this.forwardGuarded(req, res, ctx);
    this.forward(req, res, ctx, undefined);
  }

  /** Forwards a POST whose body could name a method override through an OverrideGuard. */
  private forwardGuarded(req: WithCtx, res: ServerResponse, ctx: Tracked): void {
    const scanner = bodyScanner(req.method!, req.headers);
    if (scanner === undefined) return this.forward(req, res, ctx, undefined);
    if (scanner instanceof BadRequestError) return this.deny(req, res, (ctx.denied = scanner));
    const guard = new OverrideGuard(scanner, (found) => {
      // The chunk that completes the name was not passed on: cut the upstream request
      // before it is whole, and close the agent's connection (the rest of its body is unread).
      const err = (ctx.denied = typeof found === 'string' ? bodyOverrideError(found, ctx.route!.name) : found);
      req.unpipe(guard);
      if (ctx.proxyReq) withdrawRequest(ctx.route!.agent, ctx.proxyReq);
      POISONED.add(req.socket);
      if (!res.headersSent) sendError(res, err, true);
      else res.destroy();
    });
    req.pipe(guard);
    this.forward(req, res, ctx, guard);
  }

  private deny(req: WithCtx, res: ServerResponse, denied: LeashHttpError): void {
    req.resume();
    // A malformed request (framing above all) ends the connection: nothing more it sends is trusted.
    const malformed = denied instanceof BadRequestError;
    if (malformed) POISONED.add(req.socket);
    sendError(res, denied, this.closing !== undefined || malformed);
  }

  /** The request-body phase, then SEND, then the request leaves with the bytes read. */
  private async inspectBody(req: WithCtx, res: ServerResponse, ctx: Tracked): Promise<void> {
    const route = ctx.route!;
    const read = await readRequestBody(req, ctx, route.bodyFilters, route.config.timeouts.idle);
    if ('gone' in read || ctx.clientGone || res.destroyed) return;
    if ('refused' in read) {
      // The rest of the body is unread: the connection cannot carry another request.
      ctx.denied = read.refused;
      sendError(res, read.refused, true);
      return;
    }
    const override = overrideInBody(req.method!, req.headers, read.body);
    if (override !== undefined) {
      ctx.denied = typeof override === 'string' ? bodyOverrideError(override, route.name) : override;
      sendError(res, ctx.denied, true);
      return;
    }
    const denied = (ctx.denied = runSendPasses(req, ctx, this.env));
    if (denied) return this.deny(req, res, denied);
    // Read here, sent from the buffer: framed by its length, whatever the agent's framing was.
    const out = ctx.outgoingHeaders;
    delete out['transfer-encoding'];
    if (ctx.framing.kind !== 'none') out['content-length'] = String(read.body.length);
    const buffer = new PassThrough();
    buffer.end(read.body);
    this.forward(req, res, ctx, buffer);
  }

  private forward(req: WithCtx, res: ServerResponse, ctx: Tracked, buffer: Readable | undefined): void {
    const route = ctx.route!;
    req.url = ctx.upstreamPath;
    this.proxy.web(req, res, { target: route.target, agent: route.agent, headers: ctx.outgoingHeaders, buffer }, (err: Error) =>
      this.onProxyError(err, req, res),
    );
    // Made inside the call (pool.ts): known from now on, so it can leave the queue if the agent goes.
    ctx.proxyReq ??= takeLastRequest(route.agent);
  }

  private onProxyReq(proxyReq: ClientRequest, req: WithCtx, res: ServerResponse): void {
    const ctx = req[CTX]!;
    ctx.proxyReq = proxyReq;
    if (ctx.clientGone) {
      proxyReq.destroy();
      return;
    }
    if (this.cutIfStale(proxyReq, ctx)) return;
    this.armTimeouts(proxyReq, ctx);
    // A 101 to a request that did not ask to upgrade: Node hands the socket to an 'upgrade'
    // listener and, without one, destroys it without emitting 'response' or 'error' — the
    // agent would wait forever. One shared listener (no closure per request); it finds the
    // request's context through the upstream timeouts' entry, which is live until the
    // answer completes (so nothing is added to the ClientRequest per request).
    ctx.res = res;
    proxyReq.on('upgrade', this.unsolicitedUpgrade);
  }

  /** The 'upgrade' listener of every plain request (made once: `this` is the ClientRequest). */
  private readonly unsolicitedUpgrade = ((server: ProxyServer) =>
    function (this: ClientRequest, _proxyRes: IncomingMessage, proxySocket: Duplex): void {
      server.refuseUpgrade(server.timeouts.payloadOf(this), proxySocket);
    })(this);

  /** See onProxyReq: close the upstream connection and answer 502. */
  private refuseUpgrade(ctx: Tracked | undefined, proxySocket: Duplex): void {
    proxySocket.destroy();
    if (ctx === undefined) {
      // Not tracked any more: the request is already over (timed out or gone); nothing to answer.
      this.log.warn({ code: 'LEASH_ERR_UPSTREAM_BAD_RESPONSE' }, 'the upstream switched protocols (101) on a request that is no longer tracked');
      return;
    }
    const route = ctx.route?.name;
    const err = new UpstreamBadResponseError('the upstream switched protocols (101) on a request that did not ask to upgrade', { route });
    this.log.warn({ route, code: err.code }, err.message);
    if (!ctx.clientGone) this.refuse(ctx.res!, err);
  }

  /**
   * Fail closed on the pool's queue: the credential was taken in SEND, but a request beyond
   * `maxSockets` waits for a socket for as long as other requests hold them (a stream can
   * hold one for minutes). Its head is written only once a socket is assigned, right after
   * Node's 'socket' event (http-proxy emits 'proxyReq' from it; on the WebSocket path it is
   * listened for): check the credential again then; a revoked or expiring one is never
   * written, the agent gets 503 leash_credential_unavailable. True when the request was cut.
   */
  private cutIfStale(proxyReq: ClientRequest, ctx: Tracked): boolean {
    const cred = ctx.credential;
    const provider = ctx.route!.provider;
    if (cred === undefined || provider.stillSendable === undefined || provider.stillSendable(cred, this.env.now())) return false;
    this.cutStale(proxyReq, ctx);
    return true;
  }

  /** Ends an upstream request whose credential may no longer be used; the agent is answered by onProxyError (staleAnswer). */
  private cutStale(proxyReq: ClientRequest, ctx: Tracked): void {
    ctx.stale = true;
    proxyReq.destroy(Object.assign(new Error('credential no longer usable'), { code: 'LEASH_CREDENTIAL_STALE' }));
  }

  /**
   * Ends every open exchange sent with a credential `revoked` names (a revocation,
   * revocation-handler.ts): a request still waiting for its answer gets 503
   * leash_credential_unavailable; a response under way (a stream) and a WebSocket are cut.
   * Returns how many.
   */
  cutOpen(revoked: (route: string, lease: string | undefined) => boolean): number {
    let n = 0;
    // A WebSocket's upgrade request stays in the timeouts until the next sweep after its
    // 101: counted (and closed) once, as the upgraded socket below.
    const upgraded = new Set(this.upgraded.values());
    for (const [ctx, proxyReq] of this.timeouts.entries()) {
      if (upgraded.has(ctx) || !ctx.route || !revoked(ctx.route.name, ctx.credential?.lease)) continue;
      n++;
      if (ctx.res && !ctx.res.headersSent) this.cutStale(proxyReq, ctx);
      else {
        ctx.res?.destroy();
        proxyReq.destroy();
      }
    }
    for (const [socket, ctx] of this.upgraded) {
      if (!ctx.route || !revoked(ctx.route.name, ctx.credential?.lease)) continue;
      n++;
      socket.destroy();
    }
    return n;
  }

  /** Both paths: the route's connect and idle timeouts, kept by the sweeper (timeouts.ts). */
  private armTimeouts(proxyReq: ClientRequest, ctx: Tracked): void {
    const { connect, idle } = ctx.route!.config.timeouts;
    ctx.timeout = this.timeouts.track(proxyReq, connect, idle, ctx);
  }

  private onTimeout(ctx: Tracked, proxyReq: ClientRequest): void {
    ctx.timedOut = true;
    proxyReq.destroy(Object.assign(new Error('upstream timeout'), { code: 'LEASH_UPSTREAM_TIMEOUT' }));
  }


  /** Answer a leash error, or cut the response if it has started; never throws. */
  private refuse(res: ServerResponse, err: LeashHttpError): void {
    try {
      sendError(res, err);
    } catch {
      res.destroy();
    }
  }

  private noteOutcome(route: string | undefined, outcome: ForwardOutcome): void {
    if (outcome.refused) this.log.warn({ route, code: outcome.refused.code }, outcome.refused.message);
    if (outcome.dropped > 0) this.log.warn({ route, dropped: outcome.dropped }, 'upstream response headers dropped: not safe to relay');
  }

  private onProxyError(err: Error, req: WithCtx, res: ServerResponse): void {
    const ctx = req[CTX]!;
    if (ctx.clientGone || res.writableEnded) return;
    const route = ctx.route?.name;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    if (ctx.proxyRes?.complete) {
      // Bytes after a complete answer (a 204 or 304 that carried a body): Node's parser
      // fails on them, but the answer itself is whole and still flows to the agent.
      this.log.debug({ route, code }, 'upstream sent bytes after its answer');
      return;
    }
    const answer = ctx.stale ? staleAnswer(route) : upstreamFailure(err, ctx.timedOut === true, route);
    this.log.warn({ route, code }, answer.message);
    sendError(res, answer);
  }

  private handleUpgrade(req: WithCtx, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const ctx = this.begin(req, true);
    this.upgraded.set(socket, ctx);
    socket.once('close', () => {
      this.upgraded.delete(socket);
      ctx.proxyReq?.destroy();
      this.finish(req, ctx, ctx.denied ? ctx.denied.status : ctx.timedOut ? 504 : (ctx.status ?? 502));
    });
    if (this.stall.stalled(ctx.startedAt)) {
      setImmediate(() => {
        if (!socket.destroyed) this.proceedUpgrade(req, socket, head, ctx);
      });
      return;
    }
    this.proceedUpgrade(req, socket, head, ctx);
  }

  private proceedUpgrade(req: WithCtx, socket: Duplex, head: Buffer, ctx: Tracked): void {
    const denied = (ctx.denied =
      req.headers.upgrade?.toLowerCase() !== 'websocket' || req.method !== 'GET'
        ? new BadRequestError('only WebSocket upgrades (GET) are proxied')
        : this.decide(req, ctx, false));
    if (denied) return sendSocketError(socket, denied);
    const route = ctx.route!;
    req.url = ctx.upstreamPath;
    this.proxy.ws(req, socket, head, { target: route.target, agent: route.upgradeAgent, headers: ctx.outgoingHeaders }, (err: Error) => {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      this.log.warn({ route: route.name, code }, 'websocket upstream failed');
      sendSocketError(socket, ctx.stale ? staleAnswer(route.name) : upstreamFailure(err, ctx.timedOut === true, route.name));
    });
  }

  private onProxyReqWs(proxyReq: ClientRequest, req: WithCtx, socket: Duplex): void {
    const ctx = req[CTX]!;
    const route = ctx.route!;
    ctx.proxyReq = proxyReq;
    if (socket.destroyed) return void proxyReq.destroy();
    // Until upgraded: Node marks the request destroyed once it is, and the sweeper lets go.
    this.armTimeouts(proxyReq, ctx);
    // Upgrades have their own unpooled connections, but may still wait for one to connect.
    if (!proxyReq.socket) proxyReq.once('socket', () => this.cutIfStale(proxyReq, ctx));
    else this.cutIfStale(proxyReq, ctx);
    // These listeners run before http-proxy's own (registered right after this event).
    proxyReq.on('upgrade', (proxyRes: IncomingMessage, proxySocket: Duplex) => {
      ctx.status = 101;
      // http-proxy writes these headers raw to the agent right after this listener.
      const dropped = scrubUpgradeHeaders(proxyRes.headers, route.scrubberFor(ctx.credential));
      if (dropped > 0) this.log.warn({ route: route.name, dropped }, 'upstream response headers dropped: not safe to relay');
      // Tie both sockets' lifetimes together (http-proxy leaks them on Node ≥ 15.5, PR #1559).
      socket.once('close', () => proxySocket.destroy());
      proxySocket.once('close', () => socket.destroy());
      proxySocket.on('error', () => socket.destroy());
    });
    proxyReq.on('response', (proxyRes: IncomingMessage) => {
      ctx.status = proxyRes.statusCode ?? 502;
      if (ctx.status === 401 || ctx.status === 403) this.hooks.upstreamAuthFailure(route, ctx.status, ctx.credential);
      try {
        const outcome = writeRawResponse(proxyRes, socket, route.scrubberFor(ctx.credential), route.name);
        if (outcome.refused) ctx.status = outcome.refused.status;
        this.noteOutcome(route.name, outcome);
      } catch (err) {
        this.log.warn({ route: route.name, code: (err as NodeJS.ErrnoException).code ?? 'error' }, 'upstream answer could not be written');
        socket.destroy();
      }
    });
    // A refused handshake: http-proxy registers, right after this event, a 'response'
    // listener that copies the answer to the agent raw (an echoed key included). Skip that
    // one registration; the listener above answers scrubbed instead.
    const on = proxyReq.on;
    proxyReq.on = function (this: ClientRequest, event: string | symbol, listener: (...args: any[]) => void) {
      if (event !== 'response') return on.call(this, event, listener);
      proxyReq.on = on;
      return this;
    } as typeof on;
  }

  /**
   * Stop accepting, let in-flight requests and streams finish for up to `graceMs`, then
   * cut what is left. New requests on open connections are answered leash_shutting_down
   * by the first pass. Idempotent.
   */
  close(graceMs: number): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close();
      this.server.closeIdleConnections();
      const finish = () => {
        clearTimeout(timer);
        this.idle = undefined;
        this.server.closeAllConnections();
        for (const s of this.upgraded.keys()) s.destroy();
        this.proxy.close();
        this.timeouts.close();
        resolve();
      };
      const timer = setTimeout(finish, graceMs);
      timer.unref();
      if (this.inflight === 0) finish();
      else this.idle = finish;
    });
    return this.closing;
  }
}
