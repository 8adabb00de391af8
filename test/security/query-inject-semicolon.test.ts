import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { rawRequest, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * Found triaging target.ts's survivors (twentieth session), fixed since: with
 * `inject: { query: key }`, "any parameter of that name the agent sent is removed first"
 * (docs/configuration.md), but withoutQueryParam split the query at `&` only, while
 * methodOverrideParam, next to it, splits at `&` and `;` because Rack 2 does, as did Go's
 * net/url before 1.17 and Python's parse_qs before 3.9.2. So `?x=1;key=agent-key` kept the
 * agent's `key`, and an upstream that splits at `;` and takes the first value (Go's
 * `Query().Get`) authenticated the request with the agent's key instead of leash's.
 */
// A fake credential made up for this test: not a real key.
const SECRET = 'sk-query-inject-8d2f6b0a4e1c3957';

/** Go < 1.17 net/url: `&` and `;` separate, the first value of a name wins. */
function firstValue(query: string, name: string): string | undefined {
  for (const pair of query.split(/[&;]/)) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && decodeURIComponent(pair.slice(0, eq)) === name) return decodeURIComponent(pair.slice(eq + 1));
  }
  return undefined;
}

let up: RecordingUpstream;
let leash: RunningSidecar;
let port: number;
const keys: (string | undefined)[] = [];

beforeAll(async () => {
  up = await startRecordingUpstream((req, res) => {
    const q = req.url!.indexOf('?');
    keys.push(firstValue(q === -1 ? '' : req.url!.slice(q + 1), 'key'));
    res.end('{}');
  });
  leash = await startSidecar({ routes: { maps: { upstream: up.url, credential: { env: 'KEY' }, inject: { query: 'key' }, allow: ['GET /v1/**'] } } }, { env: { KEY: SECRET } });
  port = Number(new URL(leash.url).port);
});
afterAll(async () => {
  await leash?.stop();
  await up?.close();
});

const send = (query: string) => rawRequest(port, `GET /maps/v1/geocode${query} HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });

describe("the agent's own query parameter of the injected name", () => {
  it('`&key=agent` is removed: the upstream reads only leash’s key', async () => {
    keys.length = 0;
    expect((await send('?x=1&key=agent-key')).responses[0]?.status).toBe(200);
    expect(keys).toEqual([SECRET]);
  });

  it('`;key=agent` is removed too: first-value readers that split at `;` take leash’s', async () => {
    keys.length = 0;
    expect((await send('?x=1;key=agent-key')).responses[0]?.status).toBe(200);
    expect(keys).toEqual([SECRET]);
  });
});
