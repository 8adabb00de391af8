import { execFile, spawn } from 'node:child_process';
import { createSign, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { httpJson, httpJsonAgent } from '../../src/core/http-json.js';
import { CertificateAuthority } from '../../src/pki/ca.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { createVerifier } from '../../src/verify/index.js';
import { issueServerCert, makeCa } from '../helpers/proxy-tls.js';
import { CLI, spawnLeash, writeTemp, type Spawned } from '../helpers/spawn.js';

/**
 * (Every secret in this file is a fake test value.)
 *
 * A CA file replaces the system roots for one peer: a route's upstream, the authority (for
 * sidecars and admin commands), the Kubernetes API server (for the authority), the JWKS
 * (for leash/verify). Node reads `ca: ''` as "no CA given" and trusts every public root
 * instead, and leash passed an empty file's text on as it was (or dropped it as falsy): the
 * operator's pin was gone without a word. Here the "public roots" are a CA the child
 * processes trust through NODE_EXTRA_CA_CERTS, as a real host trusts its system store,
 * and an impostor holds a certificate from it for 127.0.0.1. With every consumer given an
 * empty CA file, nothing may reach the impostor: each refuses to start, naming the key.
 */

const publicRoot = makeCa('a public root CA');
const impostorCert = issueServerCert(publicRoot);
const systemRoots = writeTemp('public-roots.pem', publicRoot.certPem);
const emptyCa = writeTemp('ca.pem', '');
const rootsEnv = { NODE_EXTRA_CA_CERTS: systemRoots };

const KEY = 'sk-live-ca-file-empty-0123456789abcdef';
const JOIN = 'leash_jt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const ADMIN = 'admin-token-ca-file-empty-0123456789';
const SA_TOKEN = 'authority-own-service-account-token-0123456789';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

/** An HTTPS server with a publicly trusted certificate for 127.0.0.1: not the peer any CA file named. */
let impostor: Server;
let impostorUrl: string;
const seen: Seen[] = [];
/** The impostor's answers by path (a JWKS, a TokenReview), or `{}`. */
const answers = new Map<string, unknown>();

const procs: Spawned[] = [];

beforeAll(async () => {
  impostor = createServer({ cert: impostorCert.certPem, key: impostorCert.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(req.url?.includes('tokenreviews') ? 201 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answers.get((req.url ?? '').split('?')[0]!) ?? {}));
    });
  });
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
  impostorUrl = `https://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
});

afterEach(() => {
  for (const p of procs.splice(0)) p.child.kill('SIGKILL');
  seen.length = 0;
  answers.clear();
});

afterAll(async () => {
  await new Promise<void>((resolve) => impostor.close(() => resolve()));
});

const port = (line: Record<string, unknown>) => Number(String(line.listen).split(':').pop());
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The process's start line, or its exit code if it exits first. */
async function startedOrExited(p: Spawned, msg: string): Promise<{ started: Record<string, unknown> } | { exit: number | null }> {
  return Promise.race([p.waitFor((l) => l.msg === msg, 15_000).then((started) => ({ started })), p.exit.then((exit) => ({ exit }))]);
}

/** Waits until the impostor has been called or `ms` passed. */
async function impostorCalled(ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (seen.length > 0) return true;
  return seen.length > 0;
}

const output = (p: Spawned) => `${p.lines.join('\n')}\n${p.stderr.join('')}`;

describe('an empty CA file is refused, never read as "the system roots"', () => {
  it('sidecar routes.<name>.caFile: the credential never reaches an upstream with a public certificate', async () => {
    const config = writeTemp(
      'sidecar.yaml',
      JSON.stringify({
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        routes: { api: { upstream: impostorUrl, caFile: emptyCa, credential: { env: 'API_KEY' }, inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      }),
    );
    const sidecar = spawnLeash(['sidecar', '--config', config], { ...rootsEnv, API_KEY: KEY });
    procs.push(sidecar);
    const r = await startedOrExited(sidecar, 'leash sidecar started');
    if ('started' in r) await fetch(`http://127.0.0.1:${port(r.started)}/api/v1/models`).catch(() => undefined);
    expect(seen.map((s) => s.authorization)).not.toContain(`Bearer ${KEY}`);
    expect(r).toEqual({ exit: 1 });
    expect(output(sidecar)).toContain('routes.api.caFile');
    expect(output(sidecar)).toContain('holds no PEM certificate');

    // leash check says so too.
    const checked = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = execFile(process.execPath, [CLI, 'check', '--config', config], { env: { PATH: process.env.PATH ?? '', ...rootsEnv, API_KEY: KEY } }, (_e, stdout, stderr) =>
        resolve({ code: c.exitCode, out: stdout + stderr }),
      );
    });
    expect(checked.code).not.toBe(0);
    expect(checked.out).toContain('holds no PEM certificate');
  });

  it('sidecar authority.caFile: the join token never reaches an "authority" with a public certificate', async () => {
    const config = writeTemp(
      'sidecar.yaml',
      JSON.stringify({
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        authority: { url: impostorUrl, caFile: emptyCa, bootstrap: { joinToken: { env: 'LEASH_JOIN_TOKEN' } } },
        routes: { api: { upstream: 'http://127.0.0.1:9', credential: 'api', inject: { header: 'authorization', format: 'Bearer {{credential}}' }, allow: ['GET /**'] } },
      }),
    );
    const sidecar = spawnLeash(['sidecar', '--config', config], { ...rootsEnv, LEASH_JOIN_TOKEN: JOIN });
    procs.push(sidecar);
    const exited = Promise.race([sidecar.exit, impostorCalled(8_000).then(() => 'running')]);
    const r = await exited;
    expect(seen.map((s) => s.body).join('\n')).not.toContain(JOIN);
    expect(seen).toEqual([]);
    expect(r).toBe(1);
    expect(output(sidecar)).toContain('authority.caFile');
  });

  it('admin commands (--ca / LEASH_CA_FILE): the admin token never reaches an "authority" with a public certificate', async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = execFile(
        process.execPath,
        [CLI, 'leases', '--json'],
        { env: { PATH: process.env.PATH ?? '', ...rootsEnv, LEASH_AUTHORITY_URL: impostorUrl, LEASH_CA_FILE: emptyCa, LEASH_ADMIN_TOKEN: ADMIN } },
        (_e, _stdout, stderr) => resolve({ code: c.exitCode, stderr }),
      );
    });
    expect(seen.map((s) => s.authorization)).not.toContain(`Bearer ${ADMIN}`);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('holds no PEM certificate');
  });

  it('authority kubernetes.caFile: an "API server" with a public certificate can neither take the authority token nor mint an identity', async () => {
    const ca = CertificateAuthority.generate('leash.local');
    const tokenFile = writeTemp('token', SA_TOKEN);
    const config = writeTemp(
      'authority.yaml',
      JSON.stringify({
        listen: '127.0.0.1:0',
        hostnames: ['127.0.0.1'],
        ca: { certFile: writeTemp('ca.pem', ca.caPem), keyFile: writeTemp('ca-key.pem', ca.exportPrivateKeyPem()) },
        kubernetes: { apiServer: impostorUrl, caFile: emptyCa, tokenFile },
        credentials: { api: { kind: 'static', source: { env: 'API_SECRET' }, ttl: '10m' } },
        policies: [{ identities: ['spiffe://leash.local/ns/prod/**'], credentials: ['api'] }],
      }),
    );
    // The impostor authenticates any token as a pod of prod/admin.
    answers.set('/apis/authentication.k8s.io/v1/tokenreviews', {
      status: {
        authenticated: true,
        audiences: ['leash'],
        user: {
          username: 'system:serviceaccount:prod:admin',
          extra: { 'authentication.kubernetes.io/pod-name': ['forged'], 'authentication.kubernetes.io/pod-uid': ['0000'] },
        },
      },
    });
    const authority = spawnLeash(['authority', '--config', config], { ...rootsEnv, API_SECRET: KEY });
    procs.push(authority);
    const r = await startedOrExited(authority, 'leash authority started');
    let minted: string | undefined;
    if ('started' in r) {
      const url = `https://127.0.0.1:${port(r.started)}`;
      const key = createIdentityKey();
      const jwtShaped = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
      const res = await httpJson({
        method: 'POST',
        url: new URL('/v1/bootstrap', url),
        tls: { ca: ca.caPem },
        json: { attestation: { kind: 'kubernetes', token: jwtShaped }, csr: createCsr(key, 'x') },
        timeoutMs: 5_000,
        maxBodyBytes: 1 << 20,
      });
      minted = (res.json() as { identity?: string }).identity;
    }
    expect(seen.map((s) => s.authorization)).not.toContain(`Bearer ${SA_TOKEN}`);
    expect(minted).toBeUndefined();
    expect('exit' in r && r.exit !== 0).toBe(true);
    expect(output(authority)).toContain('kubernetes.caFile');
  });

  it('leash/verify ca: a JWKS from a host with a public certificate never verifies a token', () => {
    // In a child process: its roots include the "public" one (NODE_EXTRA_CA_CERTS).
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'forged', alg: 'ES256', use: 'sig' };
    answers.set('/.well-known/jwks.json', { keys: [jwk] });
    const now = Math.floor(Date.now() / 1000);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${b64({ alg: 'ES256', kid: 'forged', typ: 'JWT' })}.${b64({ sub: 'spiffe://leash.local/join/root', jti: 'x', iat: now, nbf: now, exp: now + 300, aud: 'svc' })}`;
    const sig = createSign('sha256').update(input).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    const verifyModule = join(import.meta.dirname, '..', '..', 'dist', 'src', 'verify', 'index.js');
    const script = `
      const { createVerifier } = await import(${JSON.stringify(verifyModule)});
      try {
        const v = createVerifier({ jwksUrl: ${JSON.stringify(`${impostorUrl}/.well-known/jwks.json`)}, ca: '', audience: 'svc', jwksTimeoutMs: 2000 });
        const t = await v.verify(${JSON.stringify(`${input}.${sig}`)});
        console.log(JSON.stringify({ accepted: t.sub }));
      } catch (e) { console.log(JSON.stringify({ refused: e.code ?? e.name, message: e.message })); }
      process.exit(0);`;
    return new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '', ...rootsEnv } });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      child.on('exit', () => {
        try {
          const result = JSON.parse(out.trim().split('\n').pop()!) as { accepted?: string; refused?: string; message?: string };
          expect(result.accepted).toBeUndefined();
          expect(result.message).toContain('ca holds no PEM certificate');
          expect(seen).toEqual([]);
          resolve();
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  });

  it('in process: every way of handing leash a CA refuses one without a certificate, whatever it holds instead', () => {
    const real = CertificateAuthority.generate('leash.local').caPem;
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const csr = createCsr(createIdentityKey(), 'x');
    const broken = real.replace(/-----BEGIN CERTIFICATE-----\n.{8}/, '-----BEGIN CERTIFICATE-----\nAAAAAAAA');
    const family: Record<string, string> = { empty: '', blank: ' \n\t\n', junk: 'not a pem', 'a private key': keyPem, 'a CSR': csr, 'a broken certificate': broken };
    expect(new X509Certificate(real).ca).toBe(true);
    // A real CA, alone or after other PEM blocks, is taken.
    httpJsonAgent('https:', { ca: real }).destroy();
    httpJsonAgent('https:', { ca: `${keyPem}${real}` }).destroy();
    for (const [what, ca] of Object.entries(family)) {
      expect(() => httpJsonAgent('https:', { ca }), what).toThrow(/without a PEM certificate/);
      expect(() => createVerifier({ jwksUrl: 'https://127.0.0.1:1/.well-known/jwks.json', ca, audience: 'svc' }), what).toThrow(/ca holds no PEM certificate/);
    }
    // httpJson without an agent: refused before any connection is tried.
    return expect(httpJson({ method: 'GET', url: new URL(impostorUrl), tls: { ca: '' }, timeoutMs: 2_000, maxBodyBytes: 1024 })).rejects.toThrow(/without a PEM certificate/);
  });
});
