import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { parseDuration } from '../../core/duration.js';
import { API, type RevokeRequest, type RevokeResponse } from '../../core/protocol.js';
import type { Authority } from '../authority.js';
import { AuthorityError, badRequest, notFound } from '../errors.js';
import { StoreError } from '../leases/errors.js';
import { capConnections, listen, plainAddress } from '../../core/listen.js';

/**
 * The authority's HTTPS API (JSON). TLS always; client certificates are requested on
 * every connection and required (verified by TLS against the CA, then by Node's crypto
 * in Authority.identify) on every call but bootstrap, the JWKS and health. Admin calls
 * take a bearer token compared in constant time.
 */
const MAX_BODY = 64 * 1024;

/** The listener's connection caps (config `connections`; defaults as there). */
export interface AuthorityConnectionLimits {
  /** Connections held at once, in all. */
  readonly maxConnections: number;
  /** … and from one client address (sidecars keep one or two each); 0: no cap. */
  readonly perAddress: number;
  /** A client that has not finished its TLS handshake by then is cut (Node's default: 120 s). */
  readonly handshakeTimeout: number;
}
/** SHA-256 of each non-empty line of an admin.token source: several lines, several tokens (a rotation's overlap). */
function adminDigestsOf(text: string | undefined): Buffer[] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((l) => digest(l));
}

export const DEFAULT_AUTHORITY_CONNECTIONS: AuthorityConnectionLimits = { maxConnections: 10_000, perAddress: 1_000, handshakeTimeout: 10_000 };

export interface AuthorityServerOptions {
  cert: string;
  key: string;
  caPem: string;
  jwks: () => unknown;
  /** The admin token(s): one per line (an overlap while it is rotated). */
  adminToken: string | undefined;
  /**
   * Reads config `admin.token` again (a `{ file }` source, the entry point's reader): looked
   * at on every admin call, so a rotated Secret is used without a restart. Unreadable or
   * empty now keeps the tokens in use.
   */
  readAdminToken?: () => string;
  registry: Registry;
  logger: Logger;
  connections?: AuthorityConnectionLimits;
  /** false when /metrics has a listener of its own (`metrics.listen`): then 404 here. */
  metricsOnApi?: boolean;
}

type Handler = (req: IncomingMessage, body: unknown, params: string[]) => Promise<unknown> | unknown;

export class AuthorityServer {
  readonly server: Server;
  private adminDigests: Buffer[];
  private adminText: string | undefined;
  private readonly routes: Array<{ method: string; pattern: RegExp; handler: Handler }>;

  constructor(
    private readonly authority: Authority,
    private readonly opts: AuthorityServerOptions,
  ) {
    this.adminText = opts.adminToken;
    this.adminDigests = adminDigestsOf(opts.adminToken);
    const limits = opts.connections ?? DEFAULT_AUTHORITY_CONNECTIONS;
    // A TLS connection's client certificate cannot change, so its verified identity is
    // remembered for the connection (until the certificate's end): re-verifying it on
    // every keep-alive call cost ~19 % of the authority's CPU per lease. Only the
    // certificate check is remembered: whether the identity is revoked is asked of the
    // store on every call (Authority.lease / renewIdentity / release), so a revocation
    // cuts off connections that are already open.
    const identities = new WeakMap<TLSSocket, { identity: string; notAfterMs: number }>();
    const who = (req: IncomingMessage): string => {
      const socket = req.socket as TLSSocket;
      const known = identities.get(socket);
      if (known && authority.now() < known.notAfterMs) return known.identity;
      const verified = authority.verifyPeer(socket.authorized ? socket.getPeerX509Certificate() : undefined);
      identities.set(socket, verified);
      return verified.identity;
    };
    this.routes = [
      { method: 'GET', pattern: /^\/healthz$/, handler: () => ({ status: 'ok' }) },
      { method: 'GET', pattern: /^\/\.well-known\/jwks\.json$/, handler: () => opts.jwks() },
      { method: 'POST', pattern: route(API.bootstrap), handler: (r, body) => authority.bootstrap(body as never, peerAddress(r)) },
      { method: 'POST', pattern: route(API.renewIdentity), handler: (r, body) => authority.renewIdentity(who(r), body as never) },
      { method: 'POST', pattern: route(API.leases), handler: (r, body) => authority.lease(who(r), body as never) },
      {
        method: 'DELETE',
        pattern: /^\/v1\/leases\/([^/]+)$/,
        handler: async (r, _b, [id]) => {
          await authority.release(who(r), decodeLeaseId(id!));
          return { released: true };
        },
      },
      {
        method: 'POST',
        pattern: route(API.adminTokens),
        handler: (r, body) => {
          const actor = this.admin(r);
          const b = body as { identity?: unknown; ttl?: unknown };
          // Absent: ten minutes. Anything but a duration string (`600`, `true`) is refused, not defaulted.
          const ttlMs = b?.ttl === undefined ? 600_000 : typeof b.ttl === 'string' ? parseDuration(b.ttl) : undefined;
          if (typeof b?.identity !== 'string' || ttlMs === undefined) throw badRequest('identity (a string) is required; ttl, when given, is a duration like "10m"');
          return authority.createJoinToken(actor, b.identity, ttlMs);
        },
      },
      {
        method: 'POST',
        pattern: route(API.adminRevoke),
        handler: async (r, body) => {
          const actor = this.admin(r);
          const b = (body && typeof body === 'object' ? body : {}) as RevokeRequest;
          const { revocation, leases, warning } = await authority.revoke(actor, b.scope, b.target, b.reason);
          const answer: RevokeResponse = { revocation, leases, ...(warning ? { warning } : {}) };
          return answer;
        },
      },
      {
        method: 'GET',
        pattern: route(API.adminTrace),
        handler: (r) => {
          this.admin(r);
          return authority.trace(new URL(r.url ?? '/', 'https://x').searchParams.get('fingerprint') ?? '');
        },
      },
      {
        method: 'GET',
        pattern: route(API.adminLeases),
        handler: async (r) => {
          this.admin(r);
          const q = new URL(r.url ?? '/', 'https://x').searchParams;
          return { leases: await authority.listLeases({ instance: q.get('instance') ?? undefined, credential: q.get('credential') ?? undefined }) };
        },
      },
    ];
    this.server = createServer(
      {
        cert: opts.cert,
        key: opts.key,
        ca: opts.caPem,
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        // API calls are small: a client trickling headers or a body is cut early.
        headersTimeout: 10_000,
        requestTimeout: 30_000,
        // A TCP connection that never finishes its TLS handshake was kept 120 s (Node's default).
        handshakeTimeout: limits.handshakeTimeout,
      },
      (req, res) => void this.handle(req, res),
    );
    this.server.on('tlsClientError', () => undefined);
    // Nothing capped how many connections a peer without any identity could hold: enough of
    // them used up the process's file descriptors and every sidecar's call was reset. Now at
    // most maxConnections in all and perAddress from one client address.
    this.server.maxConnections = limits.maxConnections;
    if (limits.perAddress > 0) capConnections(this.server, limits.perAddress, plainAddress);
  }

  private admin(req: IncomingMessage): string {
    const header = req.headers.authorization ?? '';
    const token = header.startsWith('Bearer ') ? header.slice(7) : '';
    // Absent and wrong are told apart (an operator with a stale LEASH_ADMIN_TOKEN should not
    // hunt for a missing header); neither says anything about the expected token.
    if (!token) throw new AuthorityError('LEASH_ERR_UNAUTHENTICATED', 401, 'admin token required');
    this.rereadAdminToken();
    if (this.adminDigests.length === 0) throw new AuthorityError('LEASH_ERR_UNAUTHENTICATED', 401, 'admin token refused: this authority has no admin.token configured');
    const given = digest(token);
    let ok = false;
    for (const d of this.adminDigests) ok = timingSafeEqual(given, d) || ok; // every one compared: no early exit
    if (!ok) throw new AuthorityError('LEASH_ERR_UNAUTHENTICATED', 401, 'admin token is wrong');
    const actor = req.headers['x-leash-actor'];
    return typeof actor === 'string' && /^[\w.@-]{1,64}$/.test(actor) ? actor : 'admin';
  }

  /** admin.token read again (a rotated Secret); the token file's text never leaves here. */
  private rereadAdminToken(): void {
    const read = this.opts.readAdminToken;
    if (!read || this.adminDigests.length === 0) return; // no admin API configured stays off
    let text: string;
    try {
      text = read();
    } catch {
      return; // unreadable now (mid-swap): the tokens in use stay
    }
    if (text === this.adminText) return;
    const digests = adminDigestsOf(text);
    if (digests.length === 0) return;
    this.adminText = text;
    this.adminDigests = digests;
    this.opts.logger.info({ tokens: digests.length }, 'admin.token changed: the admin API accepts the token(s) it holds now');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' && path === '/metrics' && this.opts.metricsOnApi !== false) {
      const text = await this.opts.registry.metrics();
      res.writeHead(200, { 'content-type': this.opts.registry.contentType });
      return void res.end(text);
    }
    try {
      const match = this.routes.find((r) => r.method === req.method && r.pattern.test(path));
      if (!match) throw notFound(`no ${req.method} ${path}`);
      const params = match.pattern.exec(path)!.slice(1);
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      const result = await match.handler(req, body, params);
      send(res, 200, result);
    } catch (err) {
      if (err instanceof AuthorityError) {
        if (err.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(err.retryAfterSeconds));
        return send(res, err.status, { error: { code: err.code, message: err.message } });
      }
      if (err instanceof StoreError) {
        // The store is down: a retryable 503, so sidecars keep what they hold and back off.
        this.opts.logger.warn({ err }, 'store unavailable');
        return send(res, 503, { error: { code: err.code, message: 'authority store unavailable' } });
      }
      this.opts.logger.error({ err }, 'authority request failed');
      send(res, 500, { error: { code: 'LEASH_ERR_INTERNAL', message: 'internal error' } });
    }
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return listen(this.server, host, port);
  }

  /** Stop accepting; let calls in flight finish (API calls are short), cut what is left after `graceMs`. */
  close(graceMs = 5_000): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
      timer.unref();
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }
}

const digest = (text: string) => createHash('sha256').update(text).digest();
const route = (path: string) => new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`);

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A malformed percent-encoding is an id no lease has (404), not an internal error. */
function decodeLeaseId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return '';
  }
}

/** After a 413, this much more of the body is read and discarded (so the client can read the answer), then the connection is cut. */
const MAX_DRAIN = 1024 * 1024;

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        // Answer 413 at once without buffering more. Destroying the request here reset the
        // connection before the answer could be sent, so the rest is drained (bounded).
        req.off('data', onData);
        chunks.length = 0;
        let drained = 0;
        req.on('data', (d: Buffer) => {
          drained += d.length;
          if (drained > MAX_DRAIN) req.destroy();
        });
        reject(new AuthorityError('LEASH_ERR_AUTHORITY_BAD_REQUEST', 413, 'request body too large'));
      } else chunks.push(c);
    };
    req.on('data', onData);
    req.on('error', reject);
    req.on('end', () => {
      if (size > MAX_BODY) return;
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null'));
      } catch {
        reject(badRequest('request body is not JSON'));
      }
    });
  });
}

/** The client's address, IPv4-mapped IPv6 as plain IPv4 (one client, one key). */
function peerAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
