import type { IncomingMessage } from 'node:http';
import { firstMatch, tunnelDenied, type AllowRule } from '../../config/rules.js';
import type { RevocationGate } from '../revocation-handler.js';
import {
  BadRequestError,
  CredentialUnavailableError,
  DeniedError,
  LeashHttpError,
  ShuttingDownError,
} from '../../core/errors.js';
import { usable } from '../credentials/rotation.js';
import type { HeldCredential } from '../credentials/types.js';
import { browserRefusal, NO_CLIENT_NAMES, type ClientNames } from './browser-guard.js';
import { decideFraming, framingHeader, type Framing } from './framing.js';
import { decodableAcceptEncoding, hasDuplicateHost, stripRequestHeadersWith } from './headers.js';
import { PrefixResolver, type RouteResolver } from './resolve.js';
import type { RouteRuntime } from './route.js';
import { injectedQuery } from './inject.js';
import type { Target } from './target.js';

/**
 * The ordered request passes (STYLE 9): each looks at the request and its context and
 * either returns an error (the request is answered by leash and never forwarded) or
 * fills in the context. Nothing is forwarded until every pass has run. They are two
 * phases of the pipeline (docs/DESIGN.md "Proxy pipeline"): the request head (DECIDE:
 * may this request go at all) and, after the request-body phase of a route that inspects
 * bodies (request-body.ts), SEND (take the credential, build what goes upstream) — so the
 * credential is checked when the request leaves, however long its body took to arrive.
 */
export interface RequestContext {
  readonly startedAt: number;
  readonly upgrade: boolean;
  route: RouteRuntime | undefined;
  target: Target | undefined;
  credential: HeldCredential | undefined;
  /** The allow rule that let the request through (anomalies.ts: the operation's path template). */
  rule?: AllowRule | undefined;
  /** How the body is framed upstream (framing.ts); set by the first checks. */
  framing: Framing;
  /** Path and query sent upstream. */
  upstreamPath: string;
  /** Headers http-proxy sets on the outgoing request after copying the agent's. */
  outgoingHeaders: Record<string, string>;
}

export interface PassEnv {
  shuttingDown(): boolean;
  route(name: string): RouteRuntime | undefined;
  /** How the route is chosen (resolve.ts); by path prefix, through `route`, when absent. */
  resolver?: RouteResolver;
  /** Monotonic now, for the safety margin. */
  now(): number;
  /** Host names and web origins the agent's clients may use (browser-guard.ts); none beyond the built-in rule when absent. */
  clients?: ClientNames;
  /** Closed when revocations may have been missed for too long (revocation-handler.ts): leased credentials are not sent. */
  revocationGate?: RevocationGate;
}

type Pass = (req: IncomingMessage, ctx: RequestContext, env: PassEnv) => LeashHttpError | undefined;

const refuseWhileShuttingDown: Pass = (_req, _ctx, env) => (env.shuttingDown() ? new ShuttingDownError() : undefined);

/**
 * Node parses at most this many request header lines into `req.headers` (the listener's
 * `maxHeadersCount`, server.ts); llhttp still frames the message by every line it read, and
 * `req.rawHeaders` keeps them all. A request with more would be framed by a
 * Transfer-Encoding or Content-Length line that `req.headers` does not show: it is refused.
 */
export const MAX_REQUEST_HEADERS = 2000;

const refuseSmuggling: Pass = (req, ctx) => {
  if (req.rawHeaders.length > 2 * MAX_REQUEST_HEADERS) return new BadRequestError(`more than ${MAX_REQUEST_HEADERS} header lines`);
  if (req.method === 'CONNECT') return new BadRequestError('CONNECT is not supported: leash is a reverse proxy');
  // An upstream that implements TRACE answers with the request it received, the injected
  // credential included (cross-site tracing): never forwarded, whatever the allow rules say.
  if (req.method === 'TRACE') return new BadRequestError('TRACE is not forwarded: the answer would echo the injected credential');
  if (hasDuplicateHost(req.rawHeaders)) return new BadRequestError('more than one Host header');
  const framing = decideFraming(req.method ?? 'GET', req.rawHeaders, req.headers);
  if (framing instanceof BadRequestError) return framing;
  // A handshake has no body. With one declared, http-proxy sends the head with its framing
  // but not the bytes (they stay in the agent's socket), so an upstream that refuses the
  // upgrade and keeps the connection reads leash's next request as that body.
  if (ctx.upgrade && framing.kind !== 'none') return new BadRequestError('a WebSocket upgrade must not carry a body (Content-Length or Transfer-Encoding)');
  ctx.framing = framing;
  return undefined;
};

/** A web page in a browser the agent drives must not use the agent's routes (browser-guard.ts). */
const refuseBrowsers: Pass = (req, _ctx, env) => {
  const why = browserRefusal(req.headers, env.clients ?? NO_CLIENT_NAMES, env.resolver === undefined || env.resolver instanceof PrefixResolver);
  return why === undefined ? undefined : new DeniedError(why);
};

const resolveRoute: Pass = (req, ctx, env) => {
  const resolver = env.resolver ?? prefixResolverOf(env);
  // The usual resolver fills the context itself (no pair allocated per request).
  if (resolver instanceof PrefixResolver) return resolver.resolveInto(req, ctx);
  const resolved = resolver.resolve(req);
  if (resolved instanceof LeashHttpError) return resolved;
  ctx.target = resolved.target;
  ctx.route = resolved.route;
  return undefined;
};

const prefixResolvers = new WeakMap<PassEnv, RouteResolver>();
/** For an env built without a resolver (tests, embedders): the prefix one, made once. */
function prefixResolverOf(env: PassEnv): RouteResolver {
  let r = prefixResolvers.get(env);
  if (!r) prefixResolvers.set(env, (r = new PrefixResolver((name) => env.route(name))));
  return r;
}

const enforceAllowlist: Pass = (req, ctx) => {
  const route = ctx.route!;
  const method = req.method ?? 'GET';
  if (ctx.upgrade && !route.config.websocket) return new DeniedError('WebSocket is disabled on this route', { route: route.name });
  const rule = firstMatch(route.config.allow, method, ctx.target!.segments);
  if (!rule) {
    const tunnel = tunnelDenied(route.config.allow, method, ctx.target!.segments);
    const why = tunnel === undefined ? '' : `: "${tunnel}" carries requests of its own (any method and path, which leash cannot check), so only a rule that names it allows it`;
    return new DeniedError(`${method} ${ctx.target!.rawPath} is not allowed on this route${why}`, { route: route.name });
  }
  ctx.rule = rule;
  return undefined;
};

/** Fail closed: no credential, or one inside the safety margin of its expiry, is never sent. */
const takeCredential: Pass = (_req, ctx, env) => {
  const route = ctx.route!;
  const cred = route.provider.current();
  if (!cred || !usable(cred, env.now())) {
    route.provider.onUnavailable?.();
    return new CredentialUnavailableError('no valid credential is held for this route', { route: route.name });
  }
  const gate = env.revocationGate;
  if (gate !== undefined && gate.closed && cred.lease !== undefined) {
    return new CredentialUnavailableError(`revocations have not arrived for ${gate.downSeconds()} s (revocations.failClosedAfter): leased credentials are not sent until the channel is back`, { route: route.name });
  }
  ctx.credential = cred;
  return undefined;
};

/** The last Accept-Encoding narrowed: an agent sends the same one on every request. */
let lastAcceptEncoding: { value: string | undefined; narrowed: string | undefined } = { value: undefined, narrowed: undefined };
function narrowedAcceptEncoding(value: string | undefined): string | undefined {
  if (value === lastAcceptEncoding.value) return lastAcceptEncoding.narrowed;
  const narrowed = decodableAcceptEncoding(value);
  lastAcceptEncoding = { value, narrowed };
  return narrowed;
}

const buildOutgoing: Pass = (req, ctx) => {
  const route = ctx.route!;
  const value = ctx.credential!.value;
  stripRequestHeadersWith(req.headers, route.stripSet);
  // The agent's framing headers never go upstream as sent: leash's own replace them.
  // (No framing means Node parsed neither header: nothing to delete.)
  if (ctx.framing.kind !== 'none') {
    delete req.headers['content-length'];
    delete req.headers['transfer-encoding'];
  }
  const ae = narrowedAcceptEncoding(req.headers['accept-encoding']);
  if (ae !== undefined) req.headers['accept-encoding'] = ae;
  const out = ctx.outgoingHeaders;
  out.host = route.hostHeader;
  const frame = framingHeader(ctx.framing);
  if (frame) out[frame[0]] = frame[1];
  if (ctx.upgrade) {
    // Put back what the hop-by-hop strip removed: http-proxy's ws path checks req.headers.upgrade.
    req.headers.connection = 'Upgrade';
    req.headers.upgrade = 'websocket';
  }
  const header = route.credentialHeader(value);
  let query = ctx.target!.query;
  if (header) out[header[0]] = header[1];
  else query = injectedQuery(route.config.inject, query, value);
  ctx.upstreamPath = `${route.basePath}${ctx.target!.rawPath}${query}`;
  return undefined;
};

/** Request head: may this request go at all. */
export const DECIDE_PASSES: readonly Pass[] = [refuseWhileShuttingDown, refuseSmuggling, refuseBrowsers, resolveRoute, enforceAllowlist];
/** Right before it leaves: the credential (fail closed) and the outgoing head. */
export const SEND_PASSES: readonly Pass[] = [takeCredential, buildOutgoing];
export const PASSES: readonly Pass[] = [...DECIDE_PASSES, ...SEND_PASSES];

function run(passes: readonly Pass[], req: IncomingMessage, ctx: RequestContext, env: PassEnv): LeashHttpError | undefined {
  for (const pass of passes) {
    const err = pass(req, ctx, env);
    if (err) return err;
  }
  return undefined;
}

/** Every pass, for a request whose body is not inspected (the common case). */
export function runPasses(req: IncomingMessage, ctx: RequestContext, env: PassEnv): LeashHttpError | undefined {
  return run(PASSES, req, ctx, env);
}

/**
 * DECIDE then, unless `stopBeforeSend` says so for the route DECIDE chose (a route that
 * inspects bodies: SEND runs after the body phase), SEND — in one loop.
 */
export function runHeadPasses(
  req: IncomingMessage,
  ctx: RequestContext,
  env: PassEnv,
  stopBeforeSend: (route: RouteRuntime) => boolean,
): LeashHttpError | undefined {
  for (let i = 0; i < PASSES.length; i++) {
    if (i === DECIDE_COUNT && stopBeforeSend(ctx.route!)) return undefined;
    const err = PASSES[i]!(req, ctx, env);
    if (err) return err;
  }
  return undefined;
}
const DECIDE_COUNT = DECIDE_PASSES.length;

export function runDecidePasses(req: IncomingMessage, ctx: RequestContext, env: PassEnv): LeashHttpError | undefined {
  return run(DECIDE_PASSES, req, ctx, env);
}

export function runSendPasses(req: IncomingMessage, ctx: RequestContext, env: PassEnv): LeashHttpError | undefined {
  return run(SEND_PASSES, req, ctx, env);
}
