import { afterEach, describe, expect, it } from 'vitest';
import { startSidecar, startUpstream, type RunningSidecar, type Upstream } from '../helpers/harness.js';

const SECRET = 'sk-smoke-0123456789abcdefghij';
let upstream: Upstream;
let leash: RunningSidecar;

afterEach(async () => {
  await leash?.stop();
  await upstream?.close();
});

describe('sidecar data path', () => {
  it('injects the credential, strips the agent’s, and keeps the query', async () => {
    upstream = await startUpstream((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, auth: req.headers.authorization, xkey: req.headers['x-api-key'] ?? null }));
    });
    leash = await startSidecar(
      {
        routes: {
          openai: {
            upstream: `${upstream.url}/base`,
            credential: { env: 'KEY' },
            inject: { header: 'authorization', format: 'Bearer {{credential}}' },
            allow: ['GET /v1/**'],
          },
        },
      },
      { env: { KEY: SECRET } },
    );
    const res = await fetch(`${leash.url}/openai/v1/models?limit=2`, { headers: { authorization: 'Bearer agent-own', 'x-api-key': 'x' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ url: '/base/v1/models?limit=2', auth: `Bearer ${SECRET}`, xkey: null });
    const denied = await fetch(`${leash.url}/openai/v2/other`);
    expect(denied.status).toBe(403);
    expect(denied.headers.get('x-leash-error')).toBe('leash_denied');
    expect(leash.logs.lines.join('\n')).not.toContain(SECRET);
  });
});
