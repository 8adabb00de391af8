import { execFile } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { spawnNode, type Proc } from '../helpers/fleet-procs.js';
import { startUpstream, type Upstream } from '../helpers/harness.js';
import { CLI, writeTemp } from '../helpers/spawn.js';
import { sleep } from '../helpers/wait.js';

/**
 * Operator experience at start, with real processes (`leash authority`, `leash sidecar`,
 * `leash dev`, `leash leases`): a taken port costs nothing (no bootstrap, no lease, the
 * join token still good), a start cut short after leasing releases what it took, a spent
 * join token says so in the log and on /readyz, and optional routes do not hold /readyz.
 * (Every secret in this file is a fake test value.)
 */
const run = promisify(execFile);
// Fake values made up for this test (never real credentials).
const ADMIN = 'ops-start-admin-token-0123456789abcdef';
const STATIC_SECRET = 'sk-ops-start-static-secret-value-0123';

let caFile: string;
let caKeyFile: string;
let authority: Proc;
let authorityUrl: string;
let adminEnv: Record<string, string>;
let upstream: Upstream;
/** The oauth2 token endpoint behind credential `slow`: answers only when the test says so. */
let tokenServer: HttpServer;
const pendingTokens: ServerResponse[] = [];
let tokenRequested: () => void = () => undefined;
const procs: Proc[] = [];
const blockers: Server[] = [];

const portOf = (hostPort: unknown) => Number(String(hostPort).split(':').pop());

beforeAll(async () => {
  const ca = CertificateAuthority.generate('leash.local');
  caFile = writeTemp('ca.pem', ca.caPem);
  const keyFile = (caKeyFile = writeTemp('ca-key.pem', ca.exportPrivateKeyPem()));
  upstream = await startUpstream((req, res) => res.end(JSON.stringify({ auth: req.headers.authorization ?? null })));
  tokenServer = createHttpServer((req, res) => {
    req.resume();
    pendingTokens.push(res);
    tokenRequested();
  });
  await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
  const config = writeTemp(
    'authority.json',
    JSON.stringify({
      listen: '127.0.0.1:0',
      hostnames: ['127.0.0.1'],
      ca: { certFile: caFile, keyFile },
      admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
      credentials: {
        api: { kind: 'static', source: { env: 'API_SECRET' }, ttl: '10m' },
        slow: { kind: 'oauth2', tokenUrl: `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`, clientId: 'leash', clientSecret: { env: 'OAUTH_SECRET' }, ttl: '10m' },
      },
      policies: [{ identities: ['join:agent-*'], credentials: ['*'] }],
    }),
  );
  authority = spawnNode('authority', [CLI, 'authority', '--config', config], { LEASH_ADMIN_TOKEN: ADMIN, API_SECRET: STATIC_SECRET, OAUTH_SECRET: 'oauth-client-secret' });
  authorityUrl = `https://127.0.0.1:${portOf((await authority.waitForJson((l) => l.msg === 'leash authority started')).listen)}`;
  adminEnv = { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: authorityUrl, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN };
}, 20_000);

afterEach(async () => {
  for (const p of procs.splice(0)) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const b of blockers.splice(0)) await new Promise((resolve) => b.close(resolve));
});

afterAll(async () => {
  authority?.child.kill('SIGKILL');
  await upstream?.close();
  for (const res of pendingTokens.splice(0)) res.destroy();
  tokenServer?.closeAllConnections();
  await new Promise((resolve) => tokenServer?.close(resolve));
});

/** A port something else already listens on. */
async function takenPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  blockers.push(server);
  return (server.address() as AddressInfo).port;
}

async function joinToken(identity: string): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, 'token', 'create', '--identity', identity, '--ttl', '5m'], { env: adminEnv });
  return stdout.trim();
}

async function activeLeases(instance: string): Promise<Array<{ credential: string; instance: string }>> {
  const { stdout } = await run(process.execPath, [CLI, 'leases', '--json', '--instance', `spiffe://leash.local/join/${instance}`], { env: adminEnv });
  return JSON.parse(stdout) as Array<{ credential: string; instance: string }>;
}

function sidecarConfig(opts: { listen?: string; admin?: string; routes?: string[]; timeout?: string }): string {
  const route = (credential: string) => ({ upstream: upstream.url, credential, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] });
  return writeTemp(
    'sidecar.json',
    JSON.stringify({
      listen: opts.listen ?? '127.0.0.1:0',
      admin: opts.admin ?? '127.0.0.1:0',
      shutdown: { grace: '1s' },
      authority: { url: authorityUrl, caFile, bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } }, ...(opts.timeout ? { timeout: opts.timeout } : {}) },
      routes: Object.fromEntries((opts.routes ?? ['api']).map((c) => [c, route(c)])),
    }),
  );
}

function sidecar(name: string, config: string, env: Record<string, string>): Proc {
  const p = spawnNode(name, [CLI, 'sidecar', '--config', config], env);
  procs.push(p);
  return p;
}

/** Lines the authority printed for this join identity (audit events name it). */
const authorityEventsFor = (identity: string) =>
  authority.stdout.filter((l) => l.includes(`/join/${identity}`) && /"event":"(instance\.bootstrapped|lease\.issued)"/.test(l));

describe.each([
  ['proxy', 'listen', (port: number) => ({ listen: `127.0.0.1:${port}` })],
  ['admin listener', 'admin', (port: number) => ({ admin: `127.0.0.1:${port}` })],
] as const)('a taken %s port', (what, key, configFor) => {
  it('exits 1 naming the key that moves it; nothing is bootstrapped or leased, and the same join token then works', async () => {
    const identity = `agent-busy-${key}`;
    const token = await joinToken(identity);
    const port = await takenPort();
    const config = sidecarConfig(configFor(port));
    const first = sidecar('sidecar-busy', config, { LEASH_JOIN_TOKEN: token });
    const { code } = await first.exit;
    // The authority saw nothing from it: no bootstrap, no lease.
    expect(await activeLeases(identity)).toEqual([]);
    expect(authorityEventsFor(identity)).toEqual([]);
    expect(code).toBe(1);
    const stderr = first.stderr.join('\n').trim();
    expect(stderr.split('\n')).toHaveLength(1);
    expect(stderr).toBe(`leash: cannot listen on 127.0.0.1:${port} for the ${what}: address already in use (EADDRINUSE); set ${key}: in ${config} to a free host:port`);
    expect(first.stdout.join('\n')).not.toContain(STATIC_SECRET);

    // The same token, free ports: bootstraps, leases, ready.
    const second = sidecar('sidecar-retry', sidecarConfig({}), { LEASH_JOIN_TOKEN: token });
    const started = await second.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
    const ready = await fetch(`http://127.0.0.1:${portOf(started.admin)}/readyz`);
    expect(ready.status).toBe(200);
    expect(await activeLeases(identity)).toMatchObject([{ credential: 'api' }]);
  }, 30_000);
});

describe('a start cut short after leasing', () => {
  it('SIGTERM while a lease is still under way: the sidecar stops in order and every lease it took is released', async () => {
    const identity = 'agent-cut-short';
    const token = await joinToken(identity);
    const requested = new Promise<void>((resolve) => (tokenRequested = resolve));
    const p = sidecar('sidecar-cut', sidecarConfig({ routes: ['api', 'slow'], timeout: '20s' }), { LEASH_JOIN_TOKEN: token });
    // Bootstrapped, `api` leased, `slow` held up at its token endpoint: start is not done.
    await requested;
    for (let i = 0; (await activeLeases(identity)).length === 0; i++) {
      expect(i, 'the api lease never appeared').toBeLessThan(100);
      await sleep(50);
    }
    expect(p.stdout.some((l) => l.includes('leash sidecar started'))).toBe(false);
    p.child.kill('SIGTERM');
    // Let the held-up lease through (the old sidecar died at the signal; this one waits for it).
    await Promise.race([p.waitForLine((l) => l.includes('"signal received"')), p.exit]);
    for (const res of pendingTokens.splice(0)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: 'oauth-access-token-ops-start', token_type: 'bearer', expires_in: 600 }));
    }
    await authority.waitForJson((l) => l.event === 'lease.issued' && l.credential === 'slow' && String(l.identity).endsWith(`/join/${identity}`));
    const { code, signal } = await p.exit;
    expect(await activeLeases(identity)).toEqual([]);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(p.stdout.some((l) => l.includes('stopped during start'))).toBe(true);
  }, 30_000);
});

describe('a spent join token', () => {
  it("the sidecar's log and /readyz carry the authority's reason", async () => {
    const identity = 'agent-spent';
    const token = await joinToken(identity);
    const first = sidecar('sidecar-first', sidecarConfig({}), { LEASH_JOIN_TOKEN: token });
    await first.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
    first.child.kill('SIGTERM');
    await first.exit;

    const again = sidecar('sidecar-again', sidecarConfig({}), { LEASH_JOIN_TOKEN: token });
    const failed = await again.waitForJson((l) => l.msg === 'identity bootstrap/renewal failed', 15_000);
    expect(failed.reason).toBe('authority answered 401 (LEASH_ERR_UNAUTHENTICATED) to POST /v1/bootstrap: join token is invalid, expired or already used');
    expect((failed.err as { message: string }).message).toContain('join token is invalid, expired or already used');
    const started = await again.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
    const res = await fetch(`http://127.0.0.1:${portOf(started.admin)}/readyz`);
    expect(res.status).toBe(503);
    const text = await res.text();
    const body = JSON.parse(text) as { waitingFor: string[]; errors: { identity?: string } };
    expect(body.waitingFor).toEqual(['api']);
    expect(body.errors.identity).toContain('join token is invalid, expired or already used');
    expect(text).not.toContain(token);
    expect(again.stdout.join('\n')).not.toContain(token);
  }, 30_000);
});

describe('leash dev with a taken port', () => {
  it.each([
    ['LEASH_LISTEN', 'proxy'],
    ['LEASH_ADMIN', 'admin listener'],
  ])('%s: exits 1 naming the variable, having issued nothing', async (variable, what) => {
    const port = await takenPort();
    const env = { LEASH_LISTEN: '127.0.0.1:0', LEASH_ADMIN: '127.0.0.1:0', [variable]: `127.0.0.1:${port}` };
    const dev = spawnNode('dev', [CLI, 'dev'], env);
    procs.push(dev);
    const { code } = await dev.exit;
    // No join token made, no bootstrap, no lease (dev's authority audits each on stdout).
    expect(dev.stdout.filter((l) => /"event":"(token\.created|instance\.bootstrapped|lease\.issued)"/.test(l))).toEqual([]);
    expect(code).toBe(1);
    expect(dev.stderr.join('\n').trim()).toBe(`leash: cannot listen on 127.0.0.1:${port} for the ${what}: address already in use (EADDRINUSE); set ${variable} to a free host:port`);
  }, 20_000);

  it('--config examples/dev.yaml (which reads LEASH_LISTEN): the variable first, then the key in the file', async () => {
    const port = await takenPort();
    const dev = spawnNode('dev-config-busy', [CLI, 'dev', '--config', 'examples/dev.yaml'], { LEASH_LISTEN: `127.0.0.1:${port}`, LEASH_ADMIN: '127.0.0.1:0', OPENAI_API_KEY: 'sk-test-made-up-openai-key-ops-start-0000' });
    procs.push(dev);
    const { code } = await dev.exit;
    expect(dev.stdout.filter((l) => /"event":"(token\.created|instance\.bootstrapped|lease\.issued)"/.test(l))).toEqual([]);
    expect(code).toBe(1);
    expect(dev.stderr.join('\n').trim()).toBe(`leash: cannot listen on 127.0.0.1:${port} for the proxy: address already in use (EADDRINUSE); set LEASH_LISTEN (or sidecar.listen: in examples/dev.yaml) to a free host:port`);
  }, 20_000);
});

describe('routes.<name>.required', () => {
  const config = (routes: Record<string, { env: string; required?: boolean }>) =>
    writeTemp(
      'sidecar.json',
      JSON.stringify({
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        routes: Object.fromEntries(
          Object.entries(routes).map(([name, r]) => [
            name,
            { upstream: upstream.url, credential: { env: r.env }, inject: { header: 'authorization' }, allow: ['GET /**'], ...(r.required === undefined ? {} : { required: r.required }) },
          ]),
        ),
      }),
    );

  it('an optional route without its credential answers 503 but /readyz is 200 and lists it as not awaited', async () => {
    const p = sidecar('sidecar-optional', config({ main: { env: 'MAIN_KEY' }, extra: { env: 'EXTRA_KEY', required: false } }), { MAIN_KEY: 'main-key-value-ops-start' });
    const started = await p.waitForJson((l) => l.msg === 'leash sidecar started');
    const res = await fetch(`http://127.0.0.1:${portOf(started.admin)}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: 'ready',
      ready: true,
      waitingFor: [],
      optionalUnavailable: ['extra'],
      unavailable: ['extra'],
      errors: { routes: { extra: 'environment variable EXTRA_KEY is not set or empty' } },
    });
    const proxied = await fetch(`http://127.0.0.1:${portOf(started.listen)}/extra/x`);
    expect(proxied.status).toBe(503);
    expect(proxied.headers.get('x-leash-error')).toBe('leash_credential_unavailable');
    expect((await fetch(`http://127.0.0.1:${portOf(started.listen)}/main/x`)).status).toBe(200);
  });

  it('a required route without its credential holds /readyz at 503 and is listed as awaited', async () => {
    const p = sidecar('sidecar-required', config({ main: { env: 'MAIN_KEY' }, extra: { env: 'EXTRA_KEY', required: false } }), { EXTRA_KEY: 'extra-key-value-ops-start' });
    const started = await p.waitForJson((l) => l.msg === 'leash sidecar started');
    const res = await fetch(`http://127.0.0.1:${portOf(started.admin)}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'not ready', ready: false, waitingFor: ['main'], optionalUnavailable: [], unavailable: ['main'] });
  });
});

describe('leash dev --config examples/dev.yaml with one of the two keys (README: "one of the two is enough")', () => {
  it('ready, the route without its key listed as optional and answering 503, both shown by lease name', async () => {
    // A made-up key (never a real one); nothing here reaches api.openai.com.
    const dev = spawnNode('dev-one-key', [CLI, 'dev', '--config', 'examples/dev.yaml'], {
      LEASH_LISTEN: '127.0.0.1:0',
      LEASH_ADMIN: '127.0.0.1:0',
      OPENAI_API_KEY: 'sk-test-made-up-openai-key-ops-start-0000',
    });
    procs.push(dev);
    const started = await dev.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
    const admin = `127.0.0.1:${portOf(started.admin)}`;
    const res = await fetch(`http://${admin}/readyz`);
    expect(await res.json()).toMatchObject({ ready: true, waitingFor: [], optionalUnavailable: ['anthropic'], unavailable: ['anthropic'] });
    expect(res.status).toBe(200);
    const proxied = await fetch(`http://127.0.0.1:${portOf(started.listen)}/anthropic/v1/models`);
    expect(proxied.status).toBe(503);
    expect(proxied.headers.get('x-leash-error')).toBe('leash_credential_unavailable');
    // leash dev refuses lease names its authority does not define: no `lease:sha256:…` for them.
    const { stdout } = await run(process.execPath, [CLI, 'status', '--admin', admin], { env: { PATH: process.env.PATH ?? '' } });
    expect(stdout).toMatch(/^openai\s+yes\s+lease:openai\s/m);
    expect(stdout).toMatch(/^anthropic\s+no\s+lease:anthropic\s/m);
    expect(stdout).not.toContain('sk-test-made-up');
  }, 30_000);
});

describe('Ctrl-C (README: "leash drains and exits 0"; npm start alone reports 130)', () => {
  it('leash dev on SIGINT: signal received, its lease released, exit 0', async () => {
    const dev = spawnNode('dev-sigint', [CLI, 'dev'], { LEASH_LISTEN: '127.0.0.1:0', LEASH_ADMIN: '127.0.0.1:0' });
    procs.push(dev);
    await dev.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
    const issued = await dev.waitForJson((l) => l.event === 'lease.issued' && l.credential === 'demo');
    dev.child.kill('SIGINT');
    expect(await dev.exit).toEqual({ code: 0, signal: null });
    expect(dev.stdout.some((l) => l.includes('"signal":"SIGINT"') && l.includes('"signal received"'))).toBe(true);
    expect(dev.stdout.some((l) => l.includes('"event":"lease.released"') && l.includes(`"lease":"${String(issued.lease)}"`))).toBe(true);
  }, 30_000);
});

describe('admin token messages of the CLI (a wrong one: test/e2e/operator-cli.test.ts)', () => {
  it('unset: nothing sent, "LEASH_ADMIN_TOKEN must be set"; an authority without admin.token: says it has none', async () => {
    const leases = (env: Record<string, string>) =>
      run(process.execPath, [CLI, 'leases'], { env }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
    const { LEASH_ADMIN_TOKEN: _, ...noToken } = adminEnv;
    expect(await leases(noToken)).toEqual({ code: 1, stderr: 'leash: LEASH_ADMIN_TOKEN must be set\n' });

    const config = writeTemp(
      'authority-no-admin.json',
      JSON.stringify({
        listen: '127.0.0.1:0',
        hostnames: ['127.0.0.1'],
        ca: { certFile: caFile, keyFile: caKeyFile },
        credentials: { api: { kind: 'static', source: { env: 'API_SECRET' }, ttl: '10m' } },
        policies: [{ identities: ['join:agent-*'], credentials: ['*'] }],
      }),
    );
    const closed = spawnNode('authority-no-admin', [CLI, 'authority', '--config', config], { API_SECRET: STATIC_SECRET });
    procs.push(closed);
    const url = `https://127.0.0.1:${portOf((await closed.waitForJson((l) => l.msg === 'leash authority started')).listen)}`;
    expect(await leases({ ...adminEnv, LEASH_AUTHORITY_URL: url })).toEqual({
      code: 1,
      stderr: 'leash: authority refused (401 LEASH_ERR_UNAUTHENTICATED): admin token refused: this authority has no admin.token configured\n',
    });
  }, 30_000);
});
