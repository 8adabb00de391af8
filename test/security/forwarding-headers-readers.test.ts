import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerRoute, startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Forwarding claims servers read by default beyond the common `X-Forwarded-*` ones, each
 * with a reader: the agent could still pose as another client (an IP allow list or rate
 * limit), another scheme (cookies marked Secure, redirects) or another mTLS identity.
 * None may reach the upstream, in any spelling a server reads as the same header.
 */
const READ_BY: Array<[string, string]> = [
  ['Client-IP', 'Rails ActionDispatch::RemoteIp (HTTP_CLIENT_IP; leash\'s private address is a trusted proxy by default), PHP apps'],
  ['X-Forwarded-Protocol', 'gunicorn secure_scheme_headers default (ssl → https)'],
  ['X-Forwarded', 'request-ip (npm), django-ipware (HTTP_X_FORWARDED)'],
  ['Forwarded-For', 'request-ip (npm), django-ipware (HTTP_FORWARDED_FOR)'],
  ['X-AppEngine-User-IP', 'request-ip (npm)'],
  ['CF-Pseudo-IPv4', 'Cloudflare\'s pseudo-IPv4 client address, which apps read as the client address'],
  ['Proxy-Client-IP', 'the usual Java getClientIp helpers (after X-Forwarded-For)'],
  ['WL-Proxy-Client-IP', 'the usual Java getClientIp helpers (WebLogic)'],
  ['X-Forwarded-Client-Cert', 'Envoy XFCC (APPEND_FORWARD, Istio sidecars): the client certificate identity upstreams authorize on'],
];

const canonical = (name: string) => name.toLowerCase().replace(/_/g, '-');
const spellings = (name: string) => [...new Set([name, name.toLowerCase(), name.toUpperCase(), name.replace(/-/g, '_').toUpperCase()])];

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;

beforeAll(async () => {
  up = await startRecordingUpstream();
  leash = await startSidecar(
    { routes: { api: bearerRoute(up.url, ['GET /v1/**']) } },
    { env: { KEY: 'sk-fwd-readers-5b8e2c4a7d1f3069' } },
  );
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

describe('forwarding claims servers read are removed', () => {
  it.each(READ_BY.flatMap(([name, reader]) => spellings(name).map((s) => [s, reader] as const)))('%s (read by %s)', async (spelt) => {
    up.seen.length = 0;
    const agent = await rawRequest(port, `GET /api/v1/items HTTP/1.1\r\nHost: l\r\n${spelt}: 10.9.8.7\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });
    expect(agent.responses[0]?.status).toBe(200);
    expect(up.seen).toHaveLength(1);
    const names = up.seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map(canonical);
    expect(names).not.toContain(canonical(spelt));
  });
});
