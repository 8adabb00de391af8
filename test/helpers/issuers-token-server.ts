import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { sleep } from './wait.js';

export interface TokenRequestSeen {
  authorization: string | undefined;
  contentType: string | undefined;
  form: Record<string, string>;
}

export type Behaviour =
  | { kind: 'ok'; expiresIn?: number | string; omitExpiresIn?: boolean }
  | { kind: 'raw'; status: number; body: string }
  | { kind: 'slow'; delayMs: number };

/**
 * A real OAuth 2.0 token endpoint (RFC 6749 §4.4) on 127.0.0.1:0: checks the client
 * (HTTP Basic or the form, per §2.3.1) and grant_type, and mints a fresh token each call.
 */
export class TokenServer {
  readonly seen: TokenRequestSeen[] = [];
  behaviour: Behaviour = { kind: 'ok', expiresIn: 3600 };
  private counter = 0;
  private server!: http.Server;
  url = '';

  constructor(
    readonly clientId: string,
    readonly clientSecret: string,
    private readonly tls?: { certPem: string; keyPem: string },
  ) {}

  async start(): Promise<this> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.handle(req, res);
    this.server = this.tls ? https.createServer({ cert: this.tls.certPem, key: this.tls.keyPem }, handler) : http.createServer(handler);
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    const { port } = this.server.address() as AddressInfo;
    this.url = `${this.tls ? 'https' : 'http'}://127.0.0.1:${port}/oauth2/token`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
    this.seen.push({ authorization: req.headers.authorization, contentType: req.headers['content-type'], form });
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(body));
    };
    const b = this.behaviour;
    if (b.kind === 'slow') {
      await sleep(b.delayMs);
      if (!res.destroyed) json(200, { access_token: 'late', token_type: 'Bearer', expires_in: 60 });
      return;
    }
    if (b.kind === 'raw') {
      res.writeHead(b.status, { 'content-type': 'application/json' });
      res.end(b.body);
      return;
    }
    if (req.method !== 'POST' || req.url !== '/oauth2/token') return json(404, { error: 'invalid_request' });
    if (req.headers['content-type'] !== 'application/x-www-form-urlencoded') return json(400, { error: 'invalid_request' });
    // RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
    let id: string | undefined;
    let secret: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      const dec = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '));
      id = dec(decoded.slice(0, i));
      secret = dec(decoded.slice(i + 1));
    } else {
      id = form.client_id;
      secret = form.client_secret;
    }
    if (id !== this.clientId || secret !== this.clientSecret) {
      res.setHeader('www-authenticate', 'Basic realm="token"');
      return json(401, { error: 'invalid_client', error_description: `client authentication failed for secret ${secret ?? ''}` });
    }
    if (form.grant_type !== 'client_credentials') return json(400, { error: 'unsupported_grant_type' });
    this.counter += 1;
    const body: Record<string, unknown> = { access_token: `at-${this.counter}-${Math.random().toString(36).slice(2)}`, token_type: 'Bearer' };
    if (!b.omitExpiresIn) body.expires_in = b.expiresIn ?? 3600;
    if (form.scope) body.scope = form.scope;
    json(200, body);
  }
}
