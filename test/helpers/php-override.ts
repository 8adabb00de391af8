import { expect } from 'vitest';
import { rawRequest, recordingSidecar, type RecordingSetup } from './security-net.js';

/**
 * PHP's reading of a query parameter's name, and the method Symfony's (and Laravel's)
 * `Request::getMethod()` runs a POST as: the upstream model of the NUL-cut method-override
 * tests (override-query-nul.test.ts, override-query-undecodable.test.ts).
 */

/** PHP's php_url_decode: every valid `%XX` becomes its byte, a bad `%` stays as it is. */
export function decodeLenient(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
/** PHP's parse_str name rules: decoded leniently, cut at NUL (strlen), leading spaces dropped, ` ` / `.` / unclosed `[` → `_`. */
export function phpName(raw: string): string {
  let n = decodeLenient(raw.replace(/\+/g, ' '));
  if (n.includes('\0')) n = n.slice(0, n.indexOf('\0'));
  n = n.replace(/^ +/, '');
  const open = n.indexOf('[');
  if (open !== -1 && n.indexOf(']', open) === -1) n = n.slice(0, open) + '_' + n.slice(open + 1);
  return n.replace(/[ .]/g, '_');
}
/** Symfony Request::getMethod() on a POST: `_method` from the query. */
export function symfonyMethod(method: string, query: string): string {
  if (method !== 'POST') return method;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && phpName(pair.slice(0, eq)) === '_method') return decodeLenient(pair.slice(eq + 1)).toUpperCase();
  }
  return method;
}

export interface PhpOverrideSetup extends RecordingSetup {
  /** Each request the upstream ran as another method than it was sent with: `${method} with ${authorization}`. */
  ran: string[];
}

/**
 * The file's set-up, registered as hooks: an upstream that reads the method as Symfony
 * does (recording what it would have run as another method), behind route `chat` that
 * allows only `POST /v1/messages` with `secret` injected as a bearer token.
 */
export function phpOverrideSidecar(secret: string): PhpOverrideSetup {
  const ran: string[] = [];
  const setup = recordingSidecar(
    (url) => ({ chat: { upstream: url, credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['POST /v1/messages'] } }),
    secret,
    (req, res) => {
      const q = req.url!.indexOf('?');
      const method = symfonyMethod(req.method!, q === -1 ? '' : req.url!.slice(q + 1));
      if (method !== req.method) ran.push(`${method} with ${String(req.headers.authorization)}`);
      res.end('{}');
    },
  );
  return Object.assign(setup, { ran });
}

/** POST /v1/messages with `query`: leash refuses it (400 leash_bad_request), the upstream never sees it, nothing runs. */
export async function expectOverrideRefused(setup: PhpOverrideSetup, query: string): Promise<void> {
  setup.up.seen.length = 0;
  setup.ran.length = 0;
  const agent = await rawRequest(setup.port, `POST /chat/v1/messages${query} HTTP/1.1\r\nHost: l\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`, { expectResponses: 1 });
  expect(setup.ran, `ran upstream for POST ${query}`).toEqual([]);
  expect(agent.responses[0]?.status).toBe(400);
  expect(agent.responses[0]?.header('x-leash-error')).toBe('leash_bad_request');
  expect(setup.up.seen).toEqual([]);
}
