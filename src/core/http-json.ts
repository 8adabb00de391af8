import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { holdsCertificate } from './ca-bundle.js';

/**
 * leash's one HTTP(S) JSON client, on node:http/node:https (no undici: the sidecar's
 * resident memory matters, and these are a handful of small calls). Every outbound JSON
 * call — the sidecar's authority client, the Kubernetes TokenReview, the OAuth2 token
 * endpoint, the JWKS fetch, the admin and status CLIs — goes through `httpJson`, which:
 * - verifies TLS always (rejectUnauthorized is forced on; an agent that turns it off is refused);
 * - bounds the whole exchange (connect, TLS, request, response head and body) by one
 *   deadline, and destroys the socket when it passes;
 * - bounds the response body (per call), refusing early on a larger content-length;
 * - leaves the status to the caller, and parses JSON only when asked (`json()`).
 * Its failures are HttpJsonError, which callers map to their own coded errors. No message
 * here names the URL's path or query, a header or a body: only the failure, the status
 * and a Node/OpenSSL error code.
 */

export type HttpJsonFailure = 'unreachable' | 'timeout' | 'too_large' | 'cut_off' | 'not_json' | 'aborted';

const CODES = {
  unreachable: 'HTTP_JSON_UNREACHABLE',
  timeout: 'HTTP_JSON_TIMEOUT',
  too_large: 'HTTP_JSON_TOO_LARGE',
  cut_off: 'HTTP_JSON_CUT_OFF',
  not_json: 'HTTP_JSON_NOT_JSON',
  aborted: 'HTTP_JSON_ABORTED',
} as const satisfies Record<HttpJsonFailure, string>;

export class HttpJsonError extends Error {
  readonly code: (typeof CODES)[HttpJsonFailure];
  readonly failure: HttpJsonFailure;
  /** The status, when a response head arrived. */
  readonly status: number | undefined;
  /** The Node/OpenSSL error code behind `unreachable` / `cut_off` (ECONNREFUSED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, …); ETIMEDOUT for `timeout`. */
  readonly errno: string | undefined;
  constructor(failure: HttpJsonFailure, message: string, o: { status?: number; errno?: string; cause?: Error } = {}) {
    super(message, o.cause ? { cause: o.cause } : undefined);
    this.name = 'HttpJsonError';
    this.failure = failure;
    this.code = CODES[failure];
    this.status = o.status;
    this.errno = o.errno;
  }
}

export interface HttpJsonTls {
  /** PEM CA bundle; absent: Node's default roots. Given without a PEM certificate (`''`): refused, never the default roots. */
  ca?: string | undefined;
  /** Client certificate and key (mTLS). */
  cert?: string | undefined;
  key?: string | undefined;
}

export interface HttpJsonRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** Sent JSON-encoded, with content-type application/json. */
  json?: unknown;
  /** A body already encoded (a form): the caller sets its content-type. Not with `json`. */
  body?: Buffer | string;
  /**
   * A pooled agent the caller made with `httpJsonAgent` and closes itself; absent: one
   * connection for this call alone, with `tls`.
   */
  agent?: http.Agent;
  /** TLS options when no agent is given (an agent carries its own). */
  tls?: HttpJsonTls;
  /** The whole exchange, from connect to the last byte of the body. */
  timeoutMs: number;
  /** Largest response body read; larger is `too_large` and the connection is cut. */
  maxBodyBytes: number;
  /** Aborts the call (`aborted`), destroying its socket. */
  signal?: AbortSignal;
}

export interface HttpJsonResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as UTF-8 text (bounded by maxBodyBytes). */
  text: string;
  /** The body parsed as JSON; throws HttpJsonError `not_json` (which never quotes the body). */
  json(): unknown;
}

/**
 * A keep-alive agent for `httpJson`, owned by the caller (`agent.destroy()` closes it).
 * https: TLS verified against `ca` (or the default roots), presenting `cert`/`key` if given.
 */
export function httpJsonAgent(protocol: 'https:', o?: HttpJsonTls & { maxSockets?: number }): https.Agent;
export function httpJsonAgent(protocol: 'http:', o?: { maxSockets?: number }): http.Agent;
export function httpJsonAgent(protocol: 'http:' | 'https:', o: HttpJsonTls & { maxSockets?: number } = {}): http.Agent {
  const pool = { keepAlive: true, ...(o.maxSockets ? { maxSockets: o.maxSockets } : {}) };
  if (protocol === 'http:') return new http.Agent(pool);
  if (!caUsable(o)) throw new TypeError(CA_REFUSED);
  return new https.Agent({ ...pool, ...tlsOptions(o), rejectUnauthorized: true });
}

/** A `ca` that is given must hold a certificate: Node (and tlsOptions) would read `''` as absent, i.e. every public root. */
const caUsable = (t: HttpJsonTls | undefined): boolean => t?.ca === undefined || holdsCertificate(t.ca);
const CA_REFUSED = 'httpJson: a ca without a PEM certificate is refused (it would mean the default roots)';

function tlsOptions(t: HttpJsonTls | undefined): { ca?: string; cert?: string; key?: string } {
  return { ...(t?.ca ? { ca: t.ca } : {}), ...(t?.cert ? { cert: t.cert } : {}), ...(t?.key ? { key: t.key } : {}) };
}

/** The Node error code, or its name: never its message, which may quote what was parsed. */
const errnoOf = (err: unknown): string => ((err as NodeJS.ErrnoException)?.code ?? (err as Error)?.name ?? 'Error').toString().slice(0, 64);

/**
 * What is kept of a Node error as `cause`: its code and message, but not its own fields
 * (an HTTP parse error carries `rawPacket`, the bytes the server sent) nor its stack.
 */
function cleanCause(err: unknown): Error {
  const e = new Error(err instanceof Error ? err.message.slice(0, 300) : 'error');
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code) (e as NodeJS.ErrnoException).code = code;
  e.stack = `${e.name}: ${e.message}`;
  return e;
}

/** One HTTP(S) exchange; resolves with any status, rejects with HttpJsonError. */
export function httpJson(r: HttpJsonRequest): Promise<HttpJsonResponse> {
  if (r.json !== undefined && r.body !== undefined) return Promise.reject(new TypeError('httpJson: json and body are exclusive'));
  const isHttps = r.url.protocol === 'https:';
  if (!isHttps && r.url.protocol !== 'http:') return Promise.reject(new TypeError('httpJson: only http: and https: URLs'));
  if ((r.agent as { options?: { rejectUnauthorized?: boolean } } | undefined)?.options?.rejectUnauthorized === false) {
    // An agent's own options win over a request's (Agent#addRequest): refuse one that would not verify.
    return Promise.reject(new TypeError('httpJson: an agent with rejectUnauthorized false is refused'));
  }
  if (isHttps && !r.agent && !caUsable(r.tls)) return Promise.reject(new TypeError(CA_REFUSED));
  const body = r.json !== undefined ? Buffer.from(JSON.stringify(r.json), 'utf8') : r.body === undefined ? undefined : Buffer.from(r.body);
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...(r.json !== undefined ? { 'content-type': 'application/json' } : {}),
    ...r.headers,
    ...(body ? { 'content-length': String(body.length) } : {}),
  };
  const send = isHttps ? https.request : http.request;

  return new Promise<HttpJsonResponse>((resolve, reject) => {
    let settled = false;
    let current: http.ClientRequest | undefined;
    /** The status once a response head arrived: carried by a timeout or abort after it. */
    let headStatus: number | undefined;
    const finish = (err: HttpJsonError | undefined, res?: HttpJsonResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.signal?.removeEventListener('abort', onAbort);
      if (err) {
        // Destroying the request destroys its socket: nothing of a failed exchange goes back to a pool.
        current?.destroy();
        reject(err);
      } else resolve(res!);
    };
    const timer = setTimeout(
      () => finish(new HttpJsonError('timeout', `no complete answer within ${r.timeoutMs} ms`, { errno: 'ETIMEDOUT', status: headStatus })),
      r.timeoutMs,
    );
    const onAbort = (): void => finish(new HttpJsonError('aborted', 'the call was aborted', { status: headStatus }));
    if (r.signal?.aborted) return onAbort();
    r.signal?.addEventListener('abort', onAbort, { once: true });

    const attempt = (retried: boolean): void => {
      let req: http.ClientRequest;
      try {
        req = send(r.url, {
          method: r.method,
          headers,
          ...(r.agent ? { agent: r.agent } : { agent: false, ...(isHttps ? tlsOptions(r.tls) : {}) }),
          ...(isHttps ? { rejectUnauthorized: true } : {}),
        });
      } catch (err) {
        // Node refuses a bad header synchronously; its message names the header, never its value,
        // but only the code is kept.
        return finish(new HttpJsonError('unreachable', `request not sent (${errnoOf(err)})`, { errno: errnoOf(err) }));
      }
      current = req;
      let answered = false;
      req.on('response', (res) => {
        answered = true;
        const status = res.statusCode ?? 0;
        headStatus = status;
        const tooLarge = (): HttpJsonError => new HttpJsonError('too_large', `answer larger than ${r.maxBodyBytes} bytes`, { status });
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > r.maxBodyBytes) return finish(tooLarge());
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (settled) return;
          size += c.length;
          if (size > r.maxBodyBytes) return finish(tooLarge());
          chunks.push(c);
        });
        const cutOff = (err?: unknown): void =>
          finish(new HttpJsonError('cut_off', `answer cut off (${err ? errnoOf(err) : 'closed'})`, { status, errno: err ? errnoOf(err) : undefined, ...(err ? { cause: cleanCause(err) } : {}) }));
        res.on('error', cutOff);
        res.on('close', () => {
          if (!res.complete) cutOff();
        });
        res.on('end', () => {
          if (settled) return;
          const text = Buffer.concat(chunks).toString('utf8');
          finish(undefined, {
            status,
            headers: res.headers,
            text,
            json: () => {
              try {
                return JSON.parse(text) as unknown;
              } catch {
                // The SyntaxError quotes the body: it is not kept.
                throw new HttpJsonError('not_json', 'answer is not JSON', { status });
              }
            },
          });
        });
      });
      req.on('error', (err) => {
        if (settled) return;
        // A pooled connection the server closed while idle fails on first use: try once more
        // on a fresh one (Node's documented pattern for keep-alive races), within the same deadline.
        if (!retried && !answered && req.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET') return attempt(true);
        const errno = errnoOf(err);
        finish(answered ? new HttpJsonError('cut_off', `answer cut off (${errno})`, { errno, cause: cleanCause(err) }) : new HttpJsonError('unreachable', `unreachable (${errno})`, { errno, cause: cleanCause(err) }));
      });
      req.on('close', () => {
        // Closed with neither an answer nor an error (a retry has replaced it: not this one).
        if (!answered && current === req) setImmediate(() => finish(new HttpJsonError('unreachable', 'unreachable (closed)')));
      });
      req.end(body);
    };
    attempt(false);
  });
}
