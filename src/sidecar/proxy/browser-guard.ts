import type { IncomingHttpHeaders } from 'node:http';

/**
 * Requests a web page makes to the sidecar. Agents drive browsers (computer use, scraping,
 * research), and a browser in the agent's pod shares its loopback: any page it opens can
 * send requests to `http://127.0.0.1:8080/<route>/…`, which leash would forward with the
 * credential (cross-site request forgery: a `no-cors` POST or a WebSocket needs no
 * permission from leash), or point a DNS name of its own at 127.0.0.1 and read the answers
 * as same-origin (DNS rebinding). The agent's own clients (SDKs, HTTP libraries) send no
 * `Origin` and no `Sec-Fetch-Site`, and address the sidecar by an IP, `localhost` or a
 * single-label service name. So, pure decisions, for the proxy and the admin listener:
 *
 * - the `Host` must be an IP literal, `localhost` (or `*.localhost`), a name without a dot,
 *   or one the operator names (`clients.hosts`): a page can only rebind a DNS name it
 *   controls, which has a dot;
 * - a request carrying `Origin` (every cross-origin fetch, form post and WebSocket
 *   handshake), or `Sec-Fetch-Site: cross-site` / `same-site` (a cross-site image, script
 *   or link), is refused unless its origin is one the operator names (`clients.origins`).
 */

export interface ClientNames {
  /** Further `Host` names (lower case, no port) the sidecar is reached by. */
  readonly hosts: ReadonlySet<string>;
  /** Web origins (`scheme://host[:port]`, as browsers send them) allowed to call it. */
  readonly origins: ReadonlySet<string>;
}

export const NO_CLIENT_NAMES: ClientNames = { hosts: new Set(), origins: new Set() };

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The name part of a Host header value (no port, lower case); undefined if it is not one. */
function hostName(host: string): string | undefined {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? undefined : host.slice(0, end + 1);
  }
  const colon = host.lastIndexOf(':');
  return (colon === -1 ? host : host.slice(0, colon)).toLowerCase();
}

/** Pure: whether a page could not have rebound `host` (a Host header value) to this listener. */
export function hostAnswered(host: string | undefined, names: ClientNames): boolean {
  // HTTP/1.0 without Host: nothing a browser sends.
  if (host === undefined) return true;
  // What the agent's clients send nearly always: no slicing for it.
  if (host.startsWith('127.0.0.1') && (host.length === 9 || host.charCodeAt(9) === 58 /* : */)) return true;
  const name = hostName(host);
  if (name === undefined || name === '') return false;
  if (name.startsWith('[') || IPV4.test(name)) return true;
  if (!name.includes('.') || name === 'localhost' || name.endsWith('.localhost')) return true;
  return names.hosts.has(name);
}

/**
 * Pure: why a request is refused as coming from a web page, or undefined. Never quotes what
 * the page sent. `checkHost` false where routes are chosen by Host (resolve.ts
 * HostResolver): there the Host must be a route's own upstream host, which no page can
 * rebind to.
 */
export function browserRefusal(headers: IncomingHttpHeaders, names: ClientNames, checkHost = true): string | undefined {
  if (checkHost && !hostAnswered(headers.host, names)) {
    return 'the Host header names a host this sidecar is not reached by (a web page pointing its own DNS name at it would send one): name it in clients.hosts';
  }
  const origin = headers.origin;
  if (origin !== undefined) {
    return names.origins.has(origin.toLowerCase()) ? undefined : 'a request from a web page (it carries Origin) is refused: allow the page\'s origin in clients.origins';
  }
  const site = headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return 'a request from another site\'s web page (Sec-Fetch-Site) is refused';
  return undefined;
}
