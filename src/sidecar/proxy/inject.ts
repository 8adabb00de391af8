import type { InjectConfig } from '../../config/sidecar.js';
import type { ScrubOptions } from './scrub.js';
import { withoutQueryParam } from './target.js';

/**
 * How a credential value becomes what leash sends, in one place: each `inject` mode of a
 * route (a header with a format, HTTP Basic, a query parameter) — the header it sets, the
 * query it writes, the request header it strips from the agent, and the forms the
 * scrubber looks for in answers (scrub.ts). A new mode is a case in each function here.
 */

/** `format` with `{{credential}}` replaced; a function, so `$&` or `$'` in a value stay literal. */
export function formatted(format: string, value: string): string {
  return format.replace('{{credential}}', () => value);
}

/** The base64 of `username:value` that HTTP Basic carries. */
export function basicToken(username: string, value: string): string {
  return Buffer.from(`${username}:${value}`).toString('base64');
}

/** The header leash sets for `value` ([name, value]), or undefined when the mode writes the query. */
export function injectedHeader(inject: InjectConfig, value: string): [string, string] | undefined {
  if ('header' in inject) return [inject.header, formatted(inject.format, value)];
  if ('basic' in inject) return ['authorization', `Basic ${basicToken(inject.basic.username, value)}`];
  return undefined;
}

/** The query sent upstream in query mode: the agent's own parameter of that name removed, leash's added. */
export function injectedQuery(inject: InjectConfig, query: string, value: string): string {
  if (!('query' in inject)) return query;
  const rest = withoutQueryParam(query, inject.query);
  return `${rest ? `${rest}&` : '?'}${inject.query}=${encodeURIComponent(value)}`;
}

/**
 * A header the mode sets that the agent must not send its own of (stripped before leash
 * sets it). HTTP Basic's `authorization` is among the credential headers always stripped.
 */
export function injectedHeaderName(inject: InjectConfig): string | undefined {
  return 'header' in inject ? inject.header : undefined;
}

/** The wrappers of the value the scrubber looks for besides the value itself. */
export function scrubOptionsFor(inject: InjectConfig): ScrubOptions {
  if ('basic' in inject) return { basicUser: inject.basic.username };
  if ('header' in inject) return { format: inject.format };
  return {};
}
