import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { RouteConfig } from '../../config/sidecar.js';
import type { CredentialProvider, HeldCredential } from '../credentials/types.js';
import { requestStripSet } from './headers.js';
import type { RequestBodyFilter } from './request-body.js';
import { injectedHeader, injectedHeaderName, scrubOptionsFor } from './inject.js';
import { upstreamAgent } from './pool.js';
import { Scrubber, type ScrubOptions } from './scrub.js';

/** A configured route with what it needs at run time: its pool, its credential, its scrubber. */
export class RouteRuntime {
  readonly target: { protocol: string; host: string; hostname: string; port: number };
  readonly origin: string;
  readonly hostHeader: string;
  /** The upstream URL's path without a trailing slash ('' for the root). */
  readonly basePath: string;
  readonly agent: HttpAgent;
  /**
   * WebSocket handshakes: a connection of their own each, never pooled. A handshake the
   * upstream refuses (no 101) would otherwise leave its socket in the pool, where whatever
   * the upstream still reads as that request's body swallows the next request's head.
   */
  readonly upgradeAgent: HttpAgent;
  readonly strip: readonly string[];
  /** Every request header name removed on this route (headers.ts requestStripSet). */
  readonly stripSet: ReadonlySet<string>;
  /** The request-body phase's filters (request-body.ts); none: bodies stream untouched. */
  readonly bodyFilters: readonly RequestBodyFilter[];
  private lastHeader: { value: string; header: [string, string] | undefined } | undefined;
  private scrubber: Scrubber;

  constructor(
    readonly name: string,
    readonly config: RouteConfig,
    readonly provider: CredentialProvider,
    ca: string | undefined,
    options: { bodyFilters?: readonly RequestBodyFilter[] } = {},
  ) {
    this.bodyFilters = options.bodyFilters ?? [];
    const u = config.upstream;
    const https = u.protocol === 'https:';
    const hostname = u.hostname.replace(/^\[|\]$/g, '');
    const port = u.port ? Number(u.port) : https ? 443 : 80;
    this.target = { protocol: u.protocol, host: hostname, hostname, port };
    this.origin = u.origin;
    this.hostHeader = u.host;
    this.basePath = u.pathname.replace(/\/+$/, '');
    // Keep-alive pool per route. TLS is always verified; a route's caFile replaces the
    // system roots for that route (private PKI), it never disables verification.
    const poolOptions = { keepAlive: true, maxSockets: config.maxSockets, maxFreeSockets: 64, scheduling: 'lifo' as const };
    this.agent = https ? upstreamAgent(true, { ...poolOptions, ca, rejectUnauthorized: true }) : upstreamAgent(false, poolOptions);
    this.upgradeAgent = https ? new HttpsAgent({ keepAlive: false, ca, rejectUnauthorized: true }) : new HttpAgent({ keepAlive: false });
    const own = injectedHeaderName(config.inject);
    this.strip = own === undefined ? config.stripHeaders : [...config.stripHeaders, own];
    this.stripSet = requestStripSet(this.strip);
    this.scrubber = new Scrubber([], this.scrubOptions());
  }

  /** How this route sends its credential: the wrappers scrubbed with it (inject.ts). */
  private scrubOptions(): ScrubOptions {
    return scrubOptionsFor(this.config.inject);
  }

  /**
   * The scrubber for every value the route has held within its validity window
   * (`recentValues()`: leases until they expire, file values for the last few changes),
   * rebuilt only when that set changes.
   */
  currentScrubber(): Scrubber {
    const values = this.provider.recentValues();
    if (!sameValues(values, this.scrubber.values)) this.scrubber = new Scrubber(values, this.scrubOptions());
    return this.scrubber;
  }

  /**
   * The scrubber for one response: everything the route holds now, and always the value
   * the request itself carried (it may have been rotated out while the request ran).
   */
  scrubberFor(carried: HeldCredential | undefined): Scrubber {
    const current = this.currentScrubber();
    if (!carried || current.covers(carried.value)) return current;
    return new Scrubber([...current.values, carried.value], current.options);
  }

  /**
   * The header leash sets (name, value), or undefined for query injection. Built once per
   * value (it changes at rotation, not per request) and reused.
   */
  credentialHeader(value: string): [string, string] | undefined {
    if (this.lastHeader?.value !== value) this.lastHeader = { value, header: this.buildHeader(value) };
    return this.lastHeader.header;
  }

  private buildHeader(value: string): [string, string] | undefined {
    return injectedHeader(this.config.inject, value);
  }

  close(): void {
    this.agent.destroy();
    this.upgradeAgent.destroy();
  }
}

/** Same values in the same order (providers may hand back a new array each call). */
function sameValues(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
