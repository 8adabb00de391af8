import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type Server as NetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSidecar, type RunningSidecar } from '../helpers/harness.js';
import { CLI, CLI_MISSING } from '../helpers/spawn.js';
import { closedPort, expectContinue, rawPairs, rawRequest, sleep, startRecordingUpstream, type RecordingUpstream } from '../helpers/security-net.js';

/**
 * One regression test per http-proxy pitfall of docs/pitfalls.md, against a real upstream on
 * port 0 and a real in-process sidecar. Every assertion is on what the upstream (or a
 * second "evil" server) actually received.
 */
const SECRET = 'sk-pitfall-7f3a9c2e11d04b6a8e5f';
const BEARER = `Bearer ${SECRET}`;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function upstream(handler?: Parameters<typeof startRecordingUpstream>[0]): Promise<RecordingUpstream> {
  const up = await startRecordingUpstream(handler);
  cleanups.push(() => up.close());
  return up;
}

async function sidecar(routes: Record<string, Record<string, unknown>>): Promise<RunningSidecar> {
  const full: Record<string, unknown> = {};
  for (const [name, r] of Object.entries(routes)) {
    full[name] = { credential: { env: 'KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['* /**'], ...r };
  }
  const s = await startSidecar({ routes: full }, { env: { KEY: SECRET } });
  cleanups.push(() => s.stop());
  return s;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

describe('pitfall: credential silently missing on pooled keep-alive sockets', () => {
  for (const maxSockets of [1, 2]) {
    it(`puts the credential on 200 of 200 concurrent requests with maxSockets: ${maxSockets}`, async () => {
      const up = await upstream((req, res, body) => {
        // A little latency so requests queue behind the pool and sockets get reused.
        setTimeout(() => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ url: req.url, len: body.length }));
        }, 1);
      });
      const leash = await sidecar({ openai: { upstream: `${up.url}/base`, maxSockets } });
      const N = 200;
      const results = await Promise.all(
        Array.from({ length: N }, async (_, i) => {
          const post = i % 2 === 0;
          const res = await fetch(`${leash.url}/openai/v1/item/${i}`, {
            method: post ? 'POST' : 'GET',
            headers: { authorization: `Bearer agent-${i}`, ...(post ? { 'content-type': 'application/json' } : {}) },
            body: post ? JSON.stringify({ i, pad: 'x'.repeat(i * 10) }) : undefined,
          });
          return { status: res.status, body: (await res.json()) as { url: string } };
        }),
      );
      expect(results.filter((r) => r.status === 200)).toHaveLength(N);
      expect(up.seen).toHaveLength(N);
      const auths = up.seen.map((r) => rawPairs(r.rawHeaders).filter(([n]) => n === 'authorization').map(([, v]) => v));
      expect(auths.filter((a) => a.length === 1 && a[0] === BEARER)).toHaveLength(N);
      expect(new Set(up.seen.map((r) => r.url)).size).toBe(N);
      // The pool really was that small: sockets were reused, which is where the bug lived.
      expect(new Set(up.seen.map((r) => r.remotePort)).size).toBeLessThanOrEqual(maxSockets);
      // POST bodies arrived intact on reused sockets.
      for (const r of up.seen.filter((s) => s.method === 'POST')) expect(JSON.parse(r.body)).toHaveProperty('i');
    });
  }
});

describe('pitfall: Expect: 100-continue skipped the proxyReq hook', () => {
  it('forwards an Expect: 100-continue request with the credential (several, on a reused pooled socket)', async () => {
    const up = await upstream();
    const leash = await sidecar({ openai: { upstream: `${up.url}/base`, maxSockets: 1 } });
    // Warm the pool first so later requests go out on a reused socket.
    expect((await fetch(`${leash.url}/openai/warm`)).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      const body = `payload-${i}-${'y'.repeat(1000)}`;
      const r = await expectContinue(`${leash.url}/openai/v1/upload`, body, { 'content-type': 'text/plain', 'x-api-key': 'agent-key' });
      expect(r).toEqual({ status: 200, sawContinue: true });
    }
    const uploads = up.seen.filter((r) => r.url === '/base/v1/upload');
    expect(uploads).toHaveLength(5);
    expect(up.rawValues('authorization')).toEqual(Array(6).fill(BEARER));
    for (const [i, r] of uploads.entries()) {
      expect(rawPairs(r.rawHeaders).filter(([n]) => n === 'authorization')).toEqual([['authorization', BEARER]]);
      expect(r.headers['x-api-key']).toBeUndefined();
      expect(r.body).toBe(`payload-${i}-${'y'.repeat(1000)}`);
    }
  });
});

describe('pitfall: exactly one credential header upstream, whatever the agent sent', () => {
  const agentCredentialHeaders = [
    'Authorization: Bearer agent-one',
    'authorization: Bearer agent-two',
    'X-Api-Key: agent-x1',
    'x-api-key: agent-x2',
    'Api-Key: agent-api',
    'X-Goog-Api-Key: agent-goog',
    'Proxy-Authorization: Basic YWdlbnQ6cHc=',
    'Cookie: session=agent-cookie',
    'cookie: other=agent-cookie2',
    'X-Custom-Secret: agent-custom',
    'X-Custom-Secret: agent-custom2',
  ];
  const FORBIDDEN = ['x-api-key', 'api-key', 'x-goog-api-key', 'proxy-authorization', 'cookie', 'x-custom-secret', 'authorization'];

  async function sendWithAgentCredentials(port: number, path: string): Promise<number> {
    const ex = await rawRequest(
      port,
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${agentCredentialHeaders.join('\r\n')}\r\nConnection: close\r\n\r\n`,
    );
    return ex.responses[0]?.status ?? 0;
  }

  function onlyInjected(up: RecordingUpstream, injected: string, value: string): void {
    expect(up.seen).toHaveLength(1);
    const pairs = rawPairs(up.seen[0]!.rawHeaders);
    expect(pairs.filter(([n]) => n === injected)).toEqual([[injected, value]]);
    for (const h of FORBIDDEN.filter((f) => f !== injected)) expect(pairs.filter(([n]) => n === h), h).toEqual([]);
    // No agent value survives under any name.
    expect(JSON.stringify(pairs)).not.toContain('agent-');
  }

  it('authorization injection: one Authorization, none of the agent’s credential headers (stripHeaders included)', async () => {
    const up = await upstream();
    const leash = await sidecar({ openai: { upstream: up.url, stripHeaders: ['x-custom-secret'] } });
    expect(await sendWithAgentCredentials(portOf(leash.url), '/openai/v1/models')).toBe(200);
    onlyInjected(up, 'authorization', BEARER);
  });

  it('x-api-key injection: one x-api-key with leash’s value, no Authorization', async () => {
    const up = await upstream();
    const leash = await sidecar({ anthropic: { upstream: up.url, inject: { header: 'x-api-key', format: '{{credential}}' }, stripHeaders: ['X-Custom-Secret'] } });
    expect(await sendWithAgentCredentials(portOf(leash.url), '/anthropic/v1/messages')).toBe(200);
    onlyInjected(up, 'x-api-key', SECRET);
  });

  it('a custom injection header the agent also sends (any case) arrives once, with leash’s value', async () => {
    const up = await upstream();
    const leash = await sidecar({ custom: { upstream: up.url, inject: { header: 'X-Service-Token', format: 'tok {{credential}}' } } });
    const port = portOf(leash.url);
    const ex = await rawRequest(port, `GET /custom/x HTTP/1.1\r\nHost: h\r\nX-Service-Token: agent-a\r\nx-service-token: agent-b\r\nX-SERVICE-TOKEN: agent-c\r\nConnection: close\r\n\r\n`);
    expect(ex.responses[0]?.status).toBe(200);
    expect(rawPairs(up.seen[0]!.rawHeaders).filter(([n]) => n === 'x-service-token')).toEqual([['x-service-token', `tok ${SECRET}`]]);
    expect(JSON.stringify(up.seen[0]!.rawHeaders)).not.toContain('agent-');
  });

  it('basic injection replaces the agent’s Authorization', async () => {
    const up = await upstream();
    const leash = await sidecar({ basic: { upstream: up.url, inject: { basic: { username: 'svc' } }, stripHeaders: ['x-custom-secret'] } });
    expect(await sendWithAgentCredentials(portOf(leash.url), '/basic/x')).toBe(200);
    onlyInjected(up, 'authorization', `Basic ${Buffer.from(`svc:${SECRET}`).toString('base64')}`);
  });

  it('query injection: the agent cannot choose the key parameter, plain or percent-encoded', async () => {
    const up = await upstream();
    const leash = await sidecar({ gemini: { upstream: up.url, inject: { query: 'key' } } });
    const port = portOf(leash.url);
    const ex = await rawRequest(port, `GET /gemini/v1/models?key=agent1&a=1&%6Bey=agent2&k%65y=agent3&key&b=2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`);
    expect(ex.responses[0]?.status).toBe(200);
    const url = new URL(up.seen[0]!.url, 'http://x');
    expect(url.pathname).toBe('/v1/models');
    expect(url.searchParams.getAll('key')).toEqual([SECRET]);
    expect(url.searchParams.get('a')).toBe('1');
    expect(url.searchParams.get('b')).toBe('2');
    expect(up.seen[0]!.url).not.toContain('agent');
  });
});

describe('pitfall: duplicate Host is forwarded by Node', () => {
  for (const hosts of [
    ['Host: 127.0.0.1', 'Host: evil.example'],
    ['host: 127.0.0.1', 'HOST: 127.0.0.1'],
  ]) {
    it(`refuses ${JSON.stringify(hosts)} with 400 leash_bad_request and never contacts the upstream`, async () => {
      const up = await upstream();
      const leash = await sidecar({ openai: { upstream: up.url } });
      const ex = await rawRequest(portOf(leash.url), `GET /openai/v1/models HTTP/1.1\r\n${hosts.join('\r\n')}\r\nConnection: close\r\n\r\n`);
      const res = ex.responses[0];
      expect(res?.status).toBe(400);
      expect(res?.header('x-leash-error')).toBe('leash_bad_request');
      expect(res?.json()).toMatchObject({ error: { type: 'leash_bad_request' } });
      await sleep(50);
      expect(up.seen).toHaveLength(0);
    });
  }
});

describe('pitfall: hop-by-hop headers', () => {
  it('does not forward hop-by-hop request headers (Connection-listed, Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection)', async () => {
    const up = await upstream();
    const leash = await sidecar({ openai: { upstream: up.url } });
    const ex = await rawRequest(
      portOf(leash.url),
      [
        'POST /openai/v1/chat HTTP/1.1',
        'Host: 127.0.0.1',
        'Connection: keep-alive, X-Foo, x-bar',
        'X-Foo: hop-foo',
        'X-Bar: hop-bar',
        'Keep-Alive: timeout=987, max=654',
        'TE: trailers',
        'Trailer: x-trailer-hop',
        'Upgrade: h2c',
        'Proxy-Connection: keep-alive-hop',
        'X-End-To-End: kept',
        'Content-Length: 2',
        '',
        '{}',
      ].join('\r\n'),
      { expectResponses: 1 },
    );
    expect(ex.responses[0]?.status).toBe(200);
    expect(up.seen).toHaveLength(1);
    const pairs = rawPairs(up.seen[0]!.rawHeaders);
    const names = pairs.map(([n]) => n);
    for (const h of ['x-foo', 'x-bar', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-connection']) expect(names, h).not.toContain(h);
    const text = JSON.stringify(pairs);
    for (const v of ['hop-foo', 'hop-bar', '987', 'trailers', 'x-trailer-hop', 'h2c', 'keep-alive-hop']) expect(text, v).not.toContain(v);
    // Connection, if present at all, is the pool's own, not the agent's list.
    for (const [, v] of pairs.filter(([n]) => n === 'connection')) expect(v.toLowerCase()).not.toMatch(/x-foo|x-bar/);
    expect(up.seen[0]!.headers['x-end-to-end']).toBe('kept');
    expect(up.seen[0]!.body).toBe('{}');
  });

  it('does not pass hop-by-hop response headers from the upstream to the agent', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, [
        'Content-Type',
        'application/json',
        'Connection',
        'x-secret-hop, X-Other-Hop',
        'X-Secret-Hop',
        'hop-value-1',
        'X-Other-Hop',
        'hop-value-2',
        'Keep-Alive',
        'timeout=777, max=999',
        'Proxy-Authenticate',
        'Basic realm="upstream-proxy-auth"',
        'Upgrade',
        'h2c-from-upstream',
        'Trailer',
        'x-upstream-trailer',
        'X-End-To-End',
        'kept',
      ]);
      res.end('{"ok":true}');
    });
    const leash = await sidecar({ openai: { upstream: up.url } });
    const ex = await rawRequest(portOf(leash.url), `GET /openai/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    const res = ex.responses[0]!;
    expect(res.status).toBe(200);
    expect(res.body).toBe('{"ok":true}');
    const names = res.headers.map(([n]) => n);
    for (const h of ['x-secret-hop', 'x-other-hop', 'proxy-authenticate', 'upgrade', 'trailer']) expect(names, h).not.toContain(h);
    const text = JSON.stringify(res.headers);
    for (const v of ['hop-value', '777', '999', 'upstream-proxy-auth', 'h2c-from-upstream', 'x-upstream-trailer', 'x-secret-hop']) expect(text, v).not.toContain(v);
    expect(res.header('x-end-to-end')).toBe('kept');
  });
});

describe('pitfall: the upstream host never comes from the request target', () => {
  it('no target form reaches another host, and every forwarded request goes to the route’s upstream with its Host', async () => {
    const evil = await upstream();
    const up = await upstream();
    const leash = await sidecar({ openai: { upstream: `${up.url}/base` } });
    const port = portOf(leash.url);
    const e = `127.0.0.1:${evil.port}`;
    const attempts = [
      `//${e}/x`,
      `///${e}/x`,
      `http://${e}/x`,
      `http://${e}/openai/x`,
      `https://${e}/openai/x`,
      `/\\${e}/x`,
      `/\\\\${e}/x`,
      `/openai//${e}/x`,
      `/openai///${e}/x`,
      `/openai/http://${e}/x`,
      `/openai/http:${e}/x`,
      `/openai/%2f%2f${e}/x`,
      `/openai/\\\\${e}/x`,
      `/openai@${e}/x`,
      `/openai/..//${e}/x`,
    ];
    const statuses: Record<string, number> = {};
    for (const target of attempts) {
      const ex = await rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: ${e}\r\nConnection: close\r\n\r\n`);
      statuses[target] = ex.responses[0]?.status ?? 0;
    }
    // Also with a client that sends the Host of the evil server.
    const viaHost = await rawRequest(port, `GET /openai/v1/models HTTP/1.1\r\nHost: ${e}\r\nX-Forwarded-Host: ${e}\r\nConnection: close\r\n\r\n`);
    expect(viaHost.responses[0]?.status).toBe(200);
    await sleep(100);
    expect(evil.seen, JSON.stringify(statuses)).toHaveLength(0);
    // Whatever was forwarded went to the real upstream, under its base path, with its own Host.
    for (const r of up.seen) {
      expect(r.url.startsWith('/base/')).toBe(true);
      expect(r.url.startsWith('//')).toBe(false);
      expect(r.headers.host).toBe(`127.0.0.1:${up.port}`);
    }
    // The forms Node does not normalise and leash must refuse outright:
    for (const t of [`http://${e}/x`, `http://${e}/openai/x`, `https://${e}/openai/x`, `/\\${e}/x`, `/openai/%2f%2f${e}/x`, `/openai/..//${e}/x`]) {
      expect(statuses[t], t).toBe(400);
    }
  });
});

describe('pitfall: redirects are never followed', () => {
  it('passes a cross-origin redirect to the agent unchanged; the redirect target receives nothing', async () => {
    const evil = await upstream();
    const steal = `http://127.0.0.1:${evil.port}/steal`;
    const up = await upstream((_req, res) => {
      res.writeHead(302, { location: steal, 'content-length': '0' });
      res.end();
    });
    const leash = await sidecar({
      openai: { upstream: `${up.url}/base` },
      anthropic: { upstream: `${up.url}/base`, inject: { header: 'x-api-key', format: '{{credential}}' } },
    });
    for (const route of ['openai', 'anthropic']) {
      const res = await fetch(`${leash.url}/${route}/v1/x`, { redirect: 'manual' });
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe(steal);
    }
    await sleep(200);
    expect(up.seen).toHaveLength(2);
    expect(evil.seen).toHaveLength(0);
  });

  it('rewrites a same-origin redirect into the route’s base path to the local prefix', async () => {
    let location = '';
    const up = await upstream((_req, res) => {
      res.writeHead(302, { location, 'content-length': '0' });
      res.end();
    });
    const leash = await sidecar({ openai: { upstream: `${up.url}/base` } });
    const cases: [string, string][] = [
      [`${up.url}/base/v1/x`, '/openai/v1/x'],
      [`${up.url}/base/v1/x?page=2`, '/openai/v1/x?page=2'],
      ['/base/v1/y', '/openai/v1/y'],
      [`${up.url}/elsewhere`, `${up.url}/elsewhere`],
    ];
    for (const [from, to] of cases) {
      location = from;
      const res = await fetch(`${leash.url}/openai/v1/go`, { redirect: 'manual' });
      expect(res.status).toBe(302);
      expect(res.headers.get('location'), from).toBe(to);
    }
    expect(up.seen).toHaveLength(cases.length);
  });
});

describe('pitfall: no error listener, no crash', () => {
  async function garbageServer(): Promise<number> {
    const server: NetServer = createNetServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end('HTTP/1.1 2OO garbage\r\n\u0000\u0001\r\n\r\n'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as AddressInfo).port;
  }

  it('survives hundreds of failing upstream requests and aborted clients, and keeps serving', async () => {
    const dead = await closedPort();
    const garbage = await garbageServer();
    const resetter = await upstream((req) => req.socket.destroy());
    const halfway = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 5);
    });
    const hang = await upstream(() => undefined);
    const ok = await upstream();
    const leash = await sidecar({
      dead: { upstream: `http://127.0.0.1:${dead}` },
      garbage: { upstream: `http://127.0.0.1:${garbage}` },
      reset: { upstream: resetter.url },
      halfway: { upstream: halfway.url },
      hang: { upstream: hang.url, timeouts: { idle: '100ms' } },
      ok: { upstream: ok.url },
    });
    const statuses = new Map<string, number[]>();
    const hit = async (route: string, i: number) => {
      try {
        const res = await fetch(`${leash.url}/${route}/v1/${i}`, { method: i % 2 ? 'POST' : 'GET', body: i % 2 ? 'x'.repeat(100) : undefined });
        await res.arrayBuffer().catch(() => undefined);
        statuses.set(route, [...(statuses.get(route) ?? []), res.status]);
      } catch {
        statuses.set(route, [...(statuses.get(route) ?? []), -1]);
      }
    };
    const aborted = async (i: number) => {
      const ac = new AbortController();
      const p = fetch(`${leash.url}/hang/v1/${i}`, { signal: ac.signal }).catch(() => undefined);
      setTimeout(() => ac.abort(), 5);
      await p;
    };
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) for (const route of ['dead', 'garbage', 'reset', 'halfway', 'hang']) jobs.push(hit(route, i));
    for (let i = 0; i < 60; i++) jobs.push(aborted(i));
    for (let i = 0; i < 20; i++) jobs.push(rawRequest(portOf(leash.url), `GET /dead/x HTTP/1.1\r\nHost: h\r\n\r\n`, { timeoutMs: 1 }));
    await Promise.all(jobs);

    expect(new Set(statuses.get('dead'))).toEqual(new Set([502]));
    expect(new Set(statuses.get('garbage'))).toEqual(new Set([502]));
    expect(new Set(statuses.get('reset'))).toEqual(new Set([502]));
    expect(new Set(statuses.get('hang'))).toEqual(new Set([504]));
    // A response cut after its headers can only be cut for the agent too.
    for (const s of statuses.get('halfway')!) expect([200, -1]).toContain(s);
    // Still alive and serving, with the credential.
    const res = await fetch(`${leash.url}/ok/v1/after`);
    expect(res.status).toBe(200);
    expect(ok.seen.at(-1)?.headers.authorization).toBe(BEARER);
    const health = await fetch(`${leash.adminUrl}/healthz`);
    expect(health.status).toBe(200);
  });

  it('a spawned `leash sidecar` process survives failing upstreams and exits 0 on SIGTERM', async () => {
    expect(existsSync(CLI), CLI_MISSING).toBe(true);
    const dead = await closedPort();
    const dir = mkdtempSync(join(tmpdir(), 'leash-pitfall-'));
    const config = join(dir, 'sidecar.yaml');
    writeFileSync(
      config,
      [
        'listen: 127.0.0.1:0',
        'admin: 127.0.0.1:0',
        'shutdown: { grace: 1s }',
        'routes:',
        '  dead:',
        `    upstream: http://127.0.0.1:${dead}`,
        '    credential: { env: LEASH_TEST_KEY }',
        '    inject: { header: authorization, format: "Bearer {{credential}}" }',
        '    allow: ["* /**"]',
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [CLI, 'sidecar', '--config', config], { env: { ...process.env, LEASH_TEST_KEY: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let exited: number | null | undefined;
    const exit = new Promise<number | null>((r) => child.on('exit', (code) => r((exited = code))));
    cleanups.push(() => {
      if (exited === undefined) child.kill('SIGKILL');
    });
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const started = Date.now();
    let listen: string | undefined;
    while (!listen && Date.now() - started < 10_000 && exited === undefined) {
      await sleep(25);
      listen = /"listen":"([^"]+)"/.exec(out)?.[1];
    }
    expect(listen, out).toBeDefined();
    const port = Number(listen!.split(':').at(-1));
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        fetch(`http://127.0.0.1:${port}/dead/v1/${i}`).then(
          (r) => r.status,
          () => -1,
        ),
      ),
    );
    expect(new Set(results)).toEqual(new Set([502]));
    expect(exited).toBeUndefined();
    expect((await fetch(`http://127.0.0.1:${port}/dead/v1/again`)).status).toBe(502);
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    expect(out).not.toContain(SECRET);
  });
});
