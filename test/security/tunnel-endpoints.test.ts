import { describe, expect, it } from 'vitest';
import { bearerRoute } from '../helpers/harness.js';
import { rawRequest, recordingSidecar } from '../helpers/security-net.js';

/**
 * A batch endpoint carries requests of its own: Google APIs' `POST /batch/<api>/<version>`
 * and OData's `POST /$batch` (Microsoft Graph) take a multipart or JSON body of inner
 * requests — any method, any path — and run each with the outer request's credential.
 * The route here allows reads everywhere and `POST /v1.0/**` (send mail, create items),
 * never `DELETE`; a `$batch` holding a DELETE must not get through a wildcard.
 */
// Made up for this test (no vendor issues keys of this shape).
const SECRET = 'sk-tunnel-1f2e3d4c5b6a7980';
const t = recordingSidecar(
  (url) => ({
    graph: bearerRoute(url, ['GET /**', 'POST /v1.0/**']),
    named: bearerRoute(url, ['POST /v1.0/$batch', 'POST /graphql']),
  }),
  SECRET,
);

const BATCH = JSON.stringify({ requests: [{ id: '1', method: 'DELETE', url: '/users/someone' }] });
const post = (route: string, path: string, body = BATCH) =>
  `POST /${route}${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;

describe('batch and GraphQL endpoints need a rule that names them', () => {
  for (const path of ['/v1.0/$batch', '/v1.0/$BATCH', '/v1.0/$batch;x=1', '/v1.0/graphql', '/v1.0/graphql.json', '/v1.0/x/composite/batch', '/v1.0/idx/_bulk', '/v1.0/batch/drive/v3']) {
    it(`POST ${path} under "POST /v1.0/**": 403, nothing forwarded, the reason says why`, async () => {
      const agent = await rawRequest(t.port, post('graph', path), { expectResponses: 1 });
      const res = agent.responses[0]!;
      expect(res.status).toBe(403);
      expect(res.header('x-leash-error')).toBe('leash_denied');
      expect(res.body).toMatch(/carries requests of its own/);
      expect(agent.raw).not.toContain(SECRET);
      expect(t.up.seen).toEqual([]);
    });
  }

  it('named by a rule, the endpoint is allowed', async () => {
    for (const path of ['/v1.0/$batch', '/graphql']) {
      const agent = await rawRequest(t.port, post('named', path), { expectResponses: 1 });
      expect(agent.responses[0]?.status, path).toBe(200);
    }
    expect(t.up.seen.map((r) => r.url)).toEqual(['/v1.0/$batch', '/graphql']);
    expect(t.up.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('ordinary POSTs under the wildcard and reads of the endpoint still go through', async () => {
    expect((await rawRequest(t.port, post('graph', '/v1.0/me/sendMail', '{}'), { expectResponses: 1 })).responses[0]?.status).toBe(200);
    const get = await rawRequest(t.port, 'GET /graph/v1.0/graphql?query=%7Bme%7Bid%7D%7D HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', { expectResponses: 1 });
    expect(get.responses[0]?.status).toBe(200);
    expect(t.up.seen).toHaveLength(2);
  });
});
