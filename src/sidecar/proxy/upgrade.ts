import { IncomingMessage } from 'node:http';

/**
 * Upgrade offers on the agent's side. leash proxies one protocol switch: WebSocket
 * (server.ts handleUpgrade). Other offers are ordinary requests to answer in HTTP/1.1, as
 * RFC 9110 §7.8 lets a server do and as servers do: Java's built-in HttpClient (HTTP/2 by
 * default) sends `Connection: Upgrade, HTTP2-Settings` and `Upgrade: h2c` with every
 * request to an `http://` URL, GET and POST alike, and `curl --http2` does the same.
 *
 * Node hands every request its parser flags as an upgrade (`Connection: upgrade` with an
 * `Upgrade` header) to the server's 'upgrade' listener, whatever it offers, as soon as
 * there is one — leash has one for WebSocket, so an h2c offer had no response object and
 * was refused. The proxy listener's requests are ProxyIncomingMessage instead: its
 * `upgrade` is true only for a WebSocket offer (or CONNECT), so Node treats any other
 * offer as a plain request, exactly as it does in a server without an 'upgrade' listener.
 * The offer never goes upstream: `Upgrade` and the headers `Connection` names are
 * hop-by-hop and stripped (headers.ts), so no upstream is ever asked to switch (no h2c
 * smuggling).
 *
 * Node's parser stops reading at the end of such a message (it takes what follows as the
 * new protocol's) and drops the rest of that read, so whatever the agent sent behind it
 * is not where its framing says: the connection is closed after the answer (server.ts).
 */

/** Pure: whether an `Upgrade` header value offers WebSocket among its protocols. */
export function offersWebSocket(value: string | undefined): boolean {
  if (value === undefined) return false;
  for (const p of value.split(',')) if (p.trim().toLowerCase() === 'websocket') return true;
  return false;
}

/** What Node's parser said of the message (upgrade flag), before leash's reading of it. */
const PARSED_UPGRADE = Symbol('leash.parsedUpgrade');
type Flagged = IncomingMessage & { [PARSED_UPGRADE]?: boolean | null };

/** True when the request offered an upgrade other than WebSocket, now handled as a plain request. */
export function ignoredUpgrade(req: IncomingMessage): boolean {
  const r = req as Flagged;
  return r[PARSED_UPGRADE] === true && r.method !== 'CONNECT' && !offersWebSocket(r.headers.upgrade);
}

/** The proxy listener's request class (createServer's `IncomingMessage` option). */
export class ProxyIncomingMessage extends IncomingMessage {}

// An accessor on the prototype (TypeScript will not override a declared property with one):
// Node sets `upgrade` from its parser's flag before the headers are added and reads it
// once they are (parserOnIncoming); the getter decides then.
Object.defineProperty(ProxyIncomingMessage.prototype, 'upgrade', {
  configurable: true,
  enumerable: true,
  get(this: Flagged): boolean | null {
    const parsed = this[PARSED_UPGRADE] ?? null;
    return parsed === true && ignoredUpgrade(this) ? false : parsed;
  },
  set(this: Flagged, value: boolean | null) {
    this[PARSED_UPGRADE] = value;
  },
});
