import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Injector } from '../config/injector.js';
import { admissionResponse, decide, parseReview } from './mutate.js';
import { TlsReloader, type TlsSource } from '../core/tls-reload.js';

/**
 * The injector's HTTPS server: POST /mutate (AdmissionReview v1), /healthz, /readyz.
 * Malformed reviews get a 4xx and the server keeps serving; the decision itself is
 * mutate.ts. The certificate is reloaded when its files change (cert-manager rotates
 * them in place): looked at on every handshake that names a server (the API server
 * always sends SNI for the Service's DNS name) and on a timer for those that don't.
 */

/** An AdmissionReview carries the object (≤ 1.5 MiB in etcd) and perhaps oldObject: 8 MiB is ample. */
const MAX_BODY = 8 * 1024 * 1024;
/**
 * Request bodies held at once, over all connections. Anything in the cluster can reach the
 * webhook's port (deploy/base/injector/networkpolicy.yaml), and without a bound every open
 * upload kept up to MAX_BODY in memory: forty of them took the injector past its 256Mi
 * limit, and with failurePolicy: Fail an OOM-killed injector refuses every opted-in pod.
 */
export const DEFAULT_MAX_BUFFERED = 32 * 1024 * 1024;
/**
 * Connections held at once. At the cap a new connection is taken and an old one closed
 * (the oldest held for a second, idle ones first, else the oldest idle; see admit), never the new one refused: with
 * failurePolicy: Fail, a client that filled the table with connections doing nothing (no
 * TLS started: Node's own cap dropped every new connection, the API server's included,
 * for the 120 s of TLS's handshake timeout) refused every opted-in pod of the cluster.
 * The API server's reviews take milliseconds, so what an attacker holds open is what goes.
 */
export const MAX_CONNECTIONS = 256;
/**
 * The age past which a connection counts as held at the cap (the API server's handshake
 * and review take milliseconds): see admit.
 */
const IDLE_GRACE_MS = 1_000;
/** A TLS handshake takes milliseconds; the webhook's own timeout is 5 s. */
const HANDSHAKE_TIMEOUT = 10_000;

/** One connection, from TCP accept to close; `reviews` > 0 while a review on it is being read or answered. */
interface Conn {
  raw: Socket;
  /** Its peer's address and port, taken at accept (a destroyed socket no longer has them). */
  peer: string;
  reviews: number;
  /** performance.now() at accept. */
  since: number;
}

/** A request body being read: what it holds, and how to shed it (answer 503, close, let go of its bytes). */
interface Upload {
  held: number;
  shed: () => void;
}

export { TlsReloader, type TlsPair, type TlsSource } from '../core/tls-reload.js';

export interface InjectorServerOptions {
  injector: Injector;
  tls: TlsSource;
  logger: Logger;
  /** How often the TLS files are looked at besides SNI handshakes (ms). */
  reloadInterval: number;
  /** Request bytes held at once over all connections; beyond it a review is answered 503 (default DEFAULT_MAX_BUFFERED). */
  maxBufferedBytes?: number;
}

export class InjectorServer {
  private readonly server: Server;
  private readonly reloader: TlsReloader;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  /** Request body bytes held right now, over every connection. */
  private buffered = 0;
  private lastShedLog = 0;
  private lastEvictLog = 0;
  /** Open connections, oldest first (a Set keeps insertion order). */
  private readonly conns = new Set<Conn>();
  /** Each connection by its peer's address and port, to find it again from its TLS socket. */
  private readonly connByPeer = new Map<string, Conn>();
  /** Request bodies being read now. */
  private readonly uploads = new Set<Upload>();

  constructor(private readonly opts: InjectorServerOptions) {
    this.reloader = new TlsReloader(opts.tls, opts.logger, (pair) => this.server.setSecureContext({ cert: pair.certPem, key: pair.keyPem }));
    const reloader = this.reloader;
    this.server = createServer(
      {
        cert: reloader.currentPair.certPem,
        key: reloader.currentPair.keyPem,
        minVersion: 'TLSv1.2',
        handshakeTimeout: HANDSHAKE_TIMEOUT,
        SNICallback: (_servername, cb) => {
          reloader.check();
          cb(null, reloader.current);
        },
      },
      (req, res) => this.handle(req, res),
    );
    // A client that stalls mid-request must not hold a socket for ever; the API server's own timeout is ≤ 30s.
    this.server.requestTimeout = 30_000;
    this.server.headersTimeout = 10_000;
    // Not server.maxConnections: it refuses the newest connection, the API server's included.
    this.server.on('connection', (raw: Socket) => this.admit(raw));
  }

  /** Takes every new connection; at MAX_CONNECTIONS, closes an old one first (see MAX_CONNECTIONS). */
  private admit(raw: Socket): void {
    if (this.conns.size >= MAX_CONNECTIONS) {
      // What an attacker holds is old; the API server's connections are young (a handshake,
      // then a review of milliseconds). So: the oldest connection idle past IDLE_GRACE_MS,
      // else the oldest held review past it, else the oldest idle one, else the oldest.
      // Idle alone was not enough: with every slot held by a review, the only idle
      // connection was the one just taken — the API server's, mid-handshake.
      const now = performance.now();
      let victim: Conn | undefined;
      let rank = 4;
      for (const c of this.conns) {
        const old = now - c.since >= IDLE_GRACE_MS;
        const r = c.reviews === 0 ? (old ? 0 : 2) : old ? 1 : 3;
        if (r < rank) {
          victim = c;
          rank = r;
          if (r === 0) break;
        }
      }
      if (victim) {
        this.forget(victim);
        victim.raw.destroy();
        const now = Date.now();
        if (now - this.lastEvictLog > 10_000) {
          this.lastEvictLog = now;
          this.opts.logger.warn({ connections: MAX_CONNECTIONS }, 'injector connections at their cap: closing the oldest (idle ones first) for each new one (logged at most every 10s)');
        }
      }
    }
    const conn: Conn = { raw, peer: peerKey(raw), reviews: 0, since: performance.now() };
    this.conns.add(conn);
    this.connByPeer.set(conn.peer, conn);
    raw.once('close', () => this.forget(conn));
  }

  private forget(conn: Conn): void {
    this.conns.delete(conn);
    if (this.connByPeer.get(conn.peer) === conn) this.connByPeer.delete(conn.peer);
  }

  /** Counts a review on its connection until its response is done, so the connection is not taken for an idle one. */
  private track(req: IncomingMessage, res: ServerResponse): void {
    const conn = this.connByPeer.get(peerKey(req.socket as TLSSocket));
    if (!conn) return;
    conn.reviews++;
    res.once('close', () => conn.reviews--);
  }

  /**
   * Makes room in the budget for `extra` more bytes of `upload`: sheds the biggest other
   * uploads while they hold more than `upload` would. False when `upload` is itself the
   * biggest: it is the one to shed. So the API server's review (kilobytes) is never shed
   * for an attacker's held 8 MiB uploads.
   */
  private makeRoom(upload: Upload, extra: number, budget: number): boolean {
    while (this.buffered + extra > budget) {
      let biggest: Upload | undefined;
      for (const u of this.uploads) if (u !== upload && (!biggest || u.held > biggest.held)) biggest = u;
      if (!biggest || biggest.held <= upload.held + extra) return false;
      biggest.shed();
    }
    return true;
  }

  private logShed(): void {
    const now = Date.now();
    if (now - this.lastShedLog > 10_000) {
      this.lastShedLog = now;
      this.opts.logger.warn({ buffered: this.buffered, budget: this.opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED }, 'admission reviews shed: too many request bytes held at once (logged at most every 10s)');
    }
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    this.server.listen(port, host);
    await once(this.server, 'listening');
    this.timer = setInterval(() => this.reloader.check(), this.opts.reloadInterval);
    this.timer.unref();
    return this.server.address() as AddressInfo;
  }

  /** Stop accepting, let in-flight reviews finish; idempotent. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.timer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return send(res, 200, { status: 'ok' });
    if (path === '/readyz') return this.closing ? send(res, 503, { status: 'closing' }) : send(res, 200, { status: 'ready' });
    if (path !== '/mutate') return send(res, 404, { error: 'not found', paths: ['/mutate', '/healthz', '/readyz'] });
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return send(res, 405, { error: 'POST an AdmissionReview to /mutate' });
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') return drainThen(req, () => send(res, 415, { error: 'content-type must be application/json' }));
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY) return drainThen(req, () => send(res, 413, { error: `an AdmissionReview is at most ${MAX_BODY} bytes` }), true);
    this.track(req, res);
    const chunks: Buffer[] = [];
    const budget = this.opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED;
    let size = 0;
    let tooBig = false;
    let shed = false;
    const upload: Upload = {
      held: 0,
      // Over the shared budget: answered now and the connection closed, nothing more held.
      shed: () => {
        if (shed) return;
        shed = true;
        release();
        this.logShed();
        send(res, 503, { error: 'the injector holds too many request bytes at once; retry' }, true);
      },
    };
    this.uploads.add(upload);
    const release = () => {
      this.buffered -= upload.held;
      upload.held = 0;
      chunks.length = 0;
      this.uploads.delete(upload);
    };
    req.on('data', (chunk: Buffer) => {
      if (shed) return;
      size += chunk.length;
      if (size > MAX_BODY) {
        tooBig = true;
        release();
      } else if (!tooBig) {
        if (!this.makeRoom(upload, chunk.length, budget)) return upload.shed();
        chunks.push(chunk);
        upload.held += chunk.length;
        this.buffered += chunk.length;
      }
    });
    req.on('error', () => undefined);
    req.on('close', release);
    req.on('end', () => {
      if (shed) return;
      if (tooBig) return send(res, 413, { error: `an AdmissionReview is at most ${MAX_BODY} bytes` }, true);
      const body = Buffer.concat(chunks);
      release();
      this.review(body, res);
    });
  }

  /** Connections open right now (for tests). */
  get openConnections(): number {
    return this.conns.size;
  }

  /** Request body bytes held at once right now (for tests). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  private review(body: Buffer, res: ServerResponse): void {
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      this.opts.logger.warn('admission review rejected: body is not JSON');
      return send(res, 400, { error: 'body is not JSON' });
    }
    const parsed = parseReview(json);
    if (!parsed.ok) {
      this.opts.logger.warn({ problem: parsed.message }, 'admission review rejected: malformed');
      return send(res, 400, { error: parsed.message });
    }
    try {
      const decision = decide(this.opts.injector, parsed);
      const meta = podMeta(parsed.object);
      // Names only: a pod spec may carry secrets in its env, so it is never logged.
      this.opts.logger.info(
        { uid: parsed.uid, kind: parsed.kind, operation: parsed.operation, ...meta, allowed: decision.allowed, ...(decision.allowed ? { reason: decision.reason } : { message: decision.message }) },
        'admission review',
      );
      send(res, 200, admissionResponse(parsed.uid, decision));
    } catch (err) {
      // failurePolicy: Fail on the webhook turns this into a refused pod: closed, not open.
      this.opts.logger.error({ uid: parsed.uid, err: errCode(err) }, 'admission review failed');
      send(res, 500, { error: 'internal error deciding the review' });
    }
  }
}

/** A connection's peer, the same for its TCP socket and the TLS socket over it. */
function peerKey(socket: Socket): string {
  return `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
}

function podMeta(object: unknown): Record<string, string> {
  const meta = (object as { metadata?: { name?: unknown; generateName?: unknown; namespace?: unknown } } | undefined)?.metadata;
  const out: Record<string, string> = {};
  for (const k of ['name', 'generateName', 'namespace'] as const) if (typeof meta?.[k] === 'string') out[k] = meta[k].slice(0, 253);
  return out;
}

function send(res: ServerResponse, status: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) });
  res.end(text);
}

/** Answer after the body is consumed (or, when it is too large to read, close the connection). */
function drainThen(req: IncomingMessage, answer: () => void, close = false): void {
  if (close) return answer();
  req.resume();
  req.on('end', answer);
  req.on('error', () => undefined);
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? (err instanceof Error ? err.name : 'error');
}
