import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startAuthority, type TestAuthority } from '../helpers/authority.js';
import { api } from '../helpers/replicas.js';
import { runLeash, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

/**
 * `metrics.listen`: the authority's /metrics on a plain-HTTP listener of its own, and 404
 * on the API port. On the API port (which every sidecar pod, hence every agent, can reach)
 * the per-credential series named every credential the authority serves, to anyone.
 */
const CONFIG = {
  credentials: { 'openai-prod': { kind: 'jwt', audience: 'a' }, 'github-deploy': { kind: 'jwt', audience: 'b' } },
  policies: [{ identities: ['join:*'], credentials: ['openai-prod'] }],
};
let authority: TestAuthority | undefined;
let proc: Spawned | undefined;
afterEach(async () => {
  proc?.child.kill('SIGKILL');
  proc = undefined;
  await authority?.stop();
  authority = undefined;
});

describe('the authority metrics listener', () => {
  it('serves /metrics and /healthz over HTTP; the API port answers /metrics 404 and names no credential', async () => {
    authority = await startAuthority({ ...CONFIG, metrics: { listen: '127.0.0.1:0' } });
    const addr = await authority.running.metricsListener!.listen('127.0.0.1', 0);
    const metrics = await fetch(`http://127.0.0.1:${addr.port}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toContain('credential="github-deploy"');
    expect(text).toMatch(/^leash_build_info\{/m);
    expect((await fetch(`http://127.0.0.1:${addr.port}/healthz`)).status).toBe(200);
    for (const path of ['/v1/leases', '/v1/admin/leases', '/.well-known/jwks.json', '/metrics/../v1/admin/leases']) {
      expect((await fetch(`http://127.0.0.1:${addr.port}${path}`)).status, path).toBe(404);
    }
    const onApi = await api<unknown>(authority.url, authority.caPem, 'GET', '/metrics');
    expect(onApi.status).toBe(404);
    expect(JSON.stringify(onApi.body)).not.toContain('github-deploy');
  });

  it('without it, /metrics stays on the API port', async () => {
    authority = await startAuthority(CONFIG);
    expect(authority.running.metricsListener).toBeUndefined();
    const onApi = await api<string>(authority.url, authority.caPem, 'GET', '/metrics');
    expect(onApi.status).toBe(200);
  });

  it('`leash authority` binds it and says where; a taken port is an error naming metrics.listen', async () => {
    const config = (metrics: string) => writeTemp('authority.json', JSON.stringify({ listen: '127.0.0.1:0', ...CONFIG, metrics: { listen: metrics } }));
    proc = spawnLeash(['authority', '--config', config('127.0.0.1:0')]);
    const started = await proc.waitFor((l) => l.msg === 'leash authority started');
    const port = Number(String(started.metrics).split(':').pop());
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    proc.child.kill('SIGKILL');
    proc = undefined;
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const busy = (taken.address() as { port: number }).port;
      const r = runLeash(['authority', '--config', config(`127.0.0.1:${busy}`)]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${busy} for the authority metrics: address already in use`);
      expect(r.stderr).toContain('metrics.listen');
    } finally {
      taken.close();
    }
  });
});
