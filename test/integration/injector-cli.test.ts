import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';
import { issueServerCert, makeCa } from '../helpers/proxy-tls.js';

/**
 * The built CLI: `leash injector --config FILE` serves /mutate over HTTPS and stops on
 * SIGTERM; `leash sidecar --config-env NAME` reads its config from that variable (how the
 * injector hands a pod its config). Needs `npx tsc -p tsconfig.json` first.
 */

let proc: Spawned | undefined;
afterEach(async () => {
  if (proc && proc.child.exitCode === null) {
    proc.child.kill('SIGKILL');
    await proc.exit;
  }
  proc = undefined;
});

describe('leash sidecar --config-env', () => {
  it('starts from the YAML in the variable, ${VAR}s in it expanded', async () => {
    const config = `
instance: { id: "\${POD_NAME}" }
listen: 127.0.0.1:0
admin: 127.0.0.1:0
routes:
  vendor:
    upstream: https://vendor.example
    credential: { env: VENDOR_KEY }
    inject: { header: authorization, format: "Bearer {{credential}}" }
    allow: ["GET /**"]
`;
    proc = spawnLeash(['sidecar', '--config-env', 'LEASH_CONFIG'], { LEASH_CONFIG: config, POD_NAME: 'agent-abc12', VENDOR_KEY: 'sk-never-logged-0000' });
    await proc.waitFor((l) => l.msg === 'leash sidecar started', 10_000);
    expect(proc.lines.join('\n')).toContain('agent-abc12');
    expect(proc.lines.join('\n')).not.toContain('sk-never-logged-0000');
    proc.child.kill('SIGTERM');
    expect(await proc.exit).toBe(0);
  });

  it('an unset variable, or both --config and --config-env: exit 1 with a one-line reason', async () => {
    proc = spawnLeash(['sidecar', '--config-env', 'LEASH_CONFIG']);
    expect(await proc.exit).toBe(1);
    expect(proc.stderr.join('')).toContain('--config-env LEASH_CONFIG: the environment variable is not set');
    proc = spawnLeash(['sidecar', '--config', '/x.yaml', '--config-env', 'LEASH_CONFIG']);
    expect(await proc.exit).toBe(1);
    expect(proc.stderr.join('')).toContain('--config FILE or --config-env NAME, not both');
  });
});

describe('leash injector', () => {
  it('serves /mutate and /readyz over HTTPS and exits 0 on SIGTERM', async () => {
    const ca = makeCa();
    const cert = issueServerCert(ca);
    const certFile = writeTemp('tls.crt', cert.certPem);
    const keyFile = join(dirname(certFile), 'tls.key');
    writeFileSync(keyFile, cert.keyPem, { mode: 0o600 });
    const example = readFileSync(new URL('../../examples/injector.yaml', import.meta.url), 'utf8');
    const config = writeTemp('injector.yaml', example.replace('listen: 0.0.0.0:8443', 'listen: 127.0.0.1:0'));
    proc = spawnLeash(['injector', '--config', config], { LEASH_INJECTOR_TLS_DIR: dirname(certFile) });
    const started = await proc.waitFor((l) => l.msg === 'leash injector started', 10_000);
    const port = Number(String(started.listen).split(':').pop());
    const call = (path: string, body?: string) =>
      new Promise<{ status: number; json: Record<string, any> }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, servername: 'localhost', path, method: body ? 'POST' : 'GET', ca: ca.certPem, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text) as Record<string, any> }));
        });
        req.on('error', reject);
        req.end(body);
      });
    expect((await call('/readyz')).status).toBe(200);
    const review = readFileSync(new URL('../fixtures/admission/deployment-pod.json', import.meta.url), 'utf8');
    const reply = await call('/mutate', review);
    expect(reply.status).toBe(200);
    expect(reply.json.response).toMatchObject({ allowed: true, patchType: 'JSONPatch' });
    proc.child.kill('SIGTERM');
    expect(await proc.exit).toBe(0);
  });

  it('a taken port: exit 1 with LEASH_ERR_LISTEN\'s one line naming the key that moves it (docs/errors.md), not "unexpected error"', async () => {
    const ca = makeCa();
    const cert = issueServerCert(ca);
    const certFile = writeTemp('tls.crt', cert.certPem);
    writeFileSync(join(dirname(certFile), 'tls.key'), cert.keyPem, { mode: 0o600 });
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    try {
      const example = readFileSync(new URL('../../examples/injector.yaml', import.meta.url), 'utf8');
      const config = writeTemp('injector.yaml', example.replace('listen: 0.0.0.0:8443', `listen: 127.0.0.1:${port}`));
      proc = spawnLeash(['injector', '--config', config], { LEASH_INJECTOR_TLS_DIR: dirname(certFile) });
      expect(await proc.exit).toBe(1);
      expect(proc.stderr.join('').trim()).toBe(
        `leash: cannot listen on 127.0.0.1:${port} for the injector webhook: address already in use (EADDRINUSE); set listen: in ${config} to a free host:port`,
      );
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    }
  });
});
