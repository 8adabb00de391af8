import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { startUpstream, type Upstream } from './harness.js';
import { startRedis, type TestRedis } from './redis.js';
import { CLI, writeTemp } from './spawn.js';

/**
 * A whole leash fleet as separate processes on 127.0.0.1: a private redis-server,
 * `leash authority` (CA in temp files, Redis store, admin token, a `static` and a `jwt`
 * credential), the verify example service, an in-test upstream that records every
 * credential it receives, and N `leash sidecar`s with their own join tokens and
 * `revocations: { redis }`. Every line any of them prints is kept.
 */

const ROOT = join(import.meta.dirname, '..', '..');
export const VERIFY_SERVICE = join(ROOT, 'examples', 'verify-service', 'server.mjs');
export const ADMIN_TOKEN = 'fleet-admin-token-0123456789abcdef';
export const STATIC_CREDENTIAL = 'fleet-static';
export const JWT_CREDENTIAL = 'inventory';
export const JWT_AUDIENCE = 'inventory-api';
export const JWT_SCOPE = 'inventory:read';

export interface Proc {
  name: string;
  child: ChildProcess;
  /** stdout and stderr, line by line, in arrival order per stream. */
  stdout: string[];
  stderr: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The first stdout/stderr line matching, or a rejection with everything seen after `timeoutMs`. */
  waitForLine(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  waitForJson(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

const live = new Set<ChildProcess>();
// A crashed run must not leave processes behind.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function spawnNode(name: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  const collect = (stream: NodeJS.ReadableStream, into: string[]) => {
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        into.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      wake();
    });
    stream.on('end', () => {
      if (buf) into.push(buf);
      buf = '';
      wake();
    });
  };
  collect(child.stdout!, stdout);
  collect(child.stderr!, stderr);
  // 'close' (not 'exit'): both pipes are drained, so every line is in.
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
      wake();
    }),
  );
  let closed = false;
  void exit.then(() => (closed = true));
  const waitForLine = (pred: (line: string) => boolean, timeoutMs = 10_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const hit = [...stdout, ...stderr].find(pred);
        if (hit !== undefined) {
          done();
          resolve(hit);
        } else if (closed) {
          done();
          reject(new Error(`${name} exited before the awaited line; output:\n${[...stdout, ...stderr].join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${name}: timed out after ${timeoutMs} ms waiting for a line; output:\n${[...stdout, ...stderr].join('\n')}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const waitForJson = async (pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number) =>
    parseJson(
      await waitForLine((l) => {
        const j = parseJson(l);
        return j !== undefined && pred(j);
      }, timeoutMs),
    )!;
  return { name, child, stdout, stderr, exit, waitForLine, waitForJson };
}

export interface CliRun {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
}

const portOf = (hostPort: unknown) => Number(String(hostPort).split(':').pop());

export interface UpstreamRecord {
  /** `llm` (the static credential's route) or `inventory` (the JWT route, relayed to the verify service). */
  route: 'llm' | 'inventory';
  path: string;
  authorization: string | undefined;
  atMs: number;
}

export interface FleetSidecar {
  name: string;
  proc: Proc;
  /** http://127.0.0.1:PORT, agent-facing. */
  url: string;
  adminUrl: string;
}

export interface Fleet {
  redis: TestRedis;
  caFile: string;
  caPem: string;
  authority: Proc;
  authorityUrl: string;
  verify: Proc;
  verifyUrl: string;
  upstream: Upstream;
  received: UpstreamRecord[];
  sidecars: FleetSidecar[];
  cliRuns: CliRun[];
  /** `leash <args>` as an operator runs it (admin env set); rejects on a non-zero exit. */
  cli(args: string[]): Promise<CliRun>;
  /** Every spawned process, in start order. */
  procs(): Proc[];
  /** SIGKILL whatever still runs, close the upstream, stop Redis. Idempotent. */
  destroy(): Promise<void>;
}

/** The upstream: records every credential; `/llm/...` answers itself, `/jwt/...` is relayed to the verify service. */
function upstreamHandler(received: UpstreamRecord[], verifyUrl: () => string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const authorization = req.headers.authorization;
    req.resume();
    if (url.startsWith('/llm/')) {
      received.push({ route: 'llm', path: url, authorization, atMs: Date.now() });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, path: url.slice('/llm'.length) }));
      return;
    }
    if (url.startsWith('/jwt/')) {
      received.push({ route: 'inventory', path: url, authorization, atMs: Date.now() });
      const headers: Record<string, string> = authorization ? { authorization } : {};
      fetch(`${verifyUrl()}${url.slice('/jwt'.length)}`, { headers, signal: AbortSignal.timeout(5_000) })
        .then(async (r) => {
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
          res.end(await r.text());
        })
        .catch((err: unknown) => {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`relay failed: ${String(err)}`);
        });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  };
}

export async function startFleet(opts: { staticSecret: string; sidecars: number }): Promise<Fleet> {
  const all: Proc[] = [];
  const cliRuns: CliRun[] = [];
  const received: UpstreamRecord[] = [];
  let verifyUrl = '';
  const redis = await startRedis();
  let upstream: Upstream | undefined;
  const destroy = async () => {
    for (const p of all) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(all.map((p) => p.exit));
    await upstream?.close();
    upstream = undefined;
    await redis.stop();
  };
  try {
    const ca = CertificateAuthority.generate('leash.local');
    const caFile = writeTemp('ca.pem', ca.caPem);
    const keyFile = writeTemp('ca-key.pem', ca.exportPrivateKeyPem());
    const authorityConfig = writeTemp(
      'authority.json',
      JSON.stringify({
        listen: '127.0.0.1:0',
        hostnames: ['127.0.0.1'],
        ca: { certFile: caFile, keyFile },
        admin: { token: { env: 'LEASH_ADMIN_TOKEN' } },
        redis: redis.url,
        credentials: {
          [STATIC_CREDENTIAL]: { kind: 'static', source: { env: 'FLEET_STATIC_SECRET' }, ttl: '10m' },
          [JWT_CREDENTIAL]: { kind: 'jwt', audience: JWT_AUDIENCE, scopes: [JWT_SCOPE], ttl: '2m' },
        },
        policies: [{ identities: ['join:fleet-agent-*'], credentials: ['*'], maxTtl: '10m' }],
      }),
    );
    const authority = spawnNode('authority', [CLI, 'authority', '--config', authorityConfig], { LEASH_ADMIN_TOKEN: ADMIN_TOKEN, FLEET_STATIC_SECRET: opts.staticSecret });
    all.push(authority);
    const authorityUrl = `https://127.0.0.1:${portOf((await authority.waitForJson((l) => l.msg === 'leash authority started')).listen)}`;
    const adminEnv = { PATH: process.env.PATH ?? '', LEASH_AUTHORITY_URL: authorityUrl, LEASH_CA_FILE: caFile, LEASH_ADMIN_TOKEN: ADMIN_TOKEN };

    const cli = (args: string[]) =>
      new Promise<CliRun>((resolve, reject) => {
        execFile(process.execPath, [CLI, ...args], { env: adminEnv, timeout: 10_000 }, (err, stdout, stderr) => {
          const run: CliRun = { args, code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr };
          cliRuns.push(run);
          if (err) reject(new Error(`leash ${args.join(' ')} exited ${run.code}: ${stderr}`));
          else resolve(run);
        });
      });

    // The verify service, tokens for every sidecar and the upstream, all at once.
    const verify = spawnNode('verify-service', [VERIFY_SERVICE], {
      LEASH_JWKS_URL: `${authorityUrl}/.well-known/jwks.json`,
      LEASH_CA_FILE: caFile,
      LEASH_AUDIENCE: JWT_AUDIENCE,
      LEASH_ISSUER: 'https://127.0.0.1',
      LEASH_SCOPES: JWT_SCOPE,
      LEASH_REDIS_URL: redis.url,
      PORT: '0',
    });
    all.push(verify);
    const names = Array.from({ length: opts.sidecars }, (_, i) => `fleet-agent-${i + 1}`);
    const [verifyLine, tokens, up] = await Promise.all([
      verify.waitForLine((l) => l.startsWith('verify-service on http://')),
      Promise.all(names.map((n) => cli(['token', 'create', '--identity', n, '--ttl', '5m']).then((r) => r.stdout.trim()))),
      startUpstream(upstreamHandler(received, () => verifyUrl)),
    ]);
    upstream = up;
    verifyUrl = verifyLine.slice('verify-service on '.length).trim();

    const sidecars = await Promise.all(
      names.map(async (name, i) => {
        const config = writeTemp(
          'sidecar.json',
          JSON.stringify({
            instance: { id: `sidecar-${i + 1}` },
            listen: '127.0.0.1:0',
            admin: '127.0.0.1:0',
            shutdown: { grace: '2s' },
            authority: { url: authorityUrl, caFile, bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } } },
            revocations: { redis: redis.url },
            routes: {
              llm: { upstream: `${up.url}/llm`, credential: STATIC_CREDENTIAL, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
              inventory: { upstream: `${up.url}/jwt`, credential: JWT_CREDENTIAL, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] },
            },
          }),
        );
        const proc = spawnNode(`sidecar-${i + 1}`, [CLI, 'sidecar', '--config', config], { LEASH_JOIN_TOKEN: tokens[i]! });
        all.push(proc);
        const started = await proc.waitForJson((l) => l.msg === 'leash sidecar started', 15_000);
        return { name: `sidecar-${i + 1}`, proc, url: `http://127.0.0.1:${portOf(started.listen)}`, adminUrl: `http://127.0.0.1:${portOf(started.admin)}` };
      }),
    );
    return {
      redis,
      caFile,
      caPem: readFileSync(caFile, 'utf8'),
      authority,
      authorityUrl,
      verify,
      verifyUrl,
      upstream: up,
      received,
      sidecars,
      cliRuns,
      cli,
      procs: () => [...all],
      destroy,
    };
  } catch (err) {
    await destroy();
    throw err;
  }
}
