import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthority, type RunningAuthority } from '../../src/authority/assemble.js';
import { CertificateAuthority } from '../../src/pki/ca.js';
import type { Clock } from '../../src/core/clock.js';
import { authoritySchema } from '../../src/config/authority.js';
import { parseConfig } from '../../src/config/load.js';
import { createCsr, createIdentityKey } from '../../src/pki/x509.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { ADMIN_TOKEN } from './authority.js';
import { LogSink } from './harness.js';

/**
 * Several authority replicas of one fleet, in-process: the same operator CA (PEMs, as
 * `ca: { certFile, keyFile }` would give), the same JWT signing keys (`signing.keysDir`)
 * and the same Redis, each with its own store connection and its own HTTPS port.
 */
export interface FleetSecrets {
  trustDomain: string;
  ca: { certPem: string; keyPem: string };
  keysDir: string;
  /** Removes the keys directory. */
  dispose(): void;
}

export function fleetSecrets(trustDomain = 'leash.local'): FleetSecrets {
  const ca = CertificateAuthority.generate(trustDomain);
  const keysDir = mkdtempSync(join(tmpdir(), 'leash-jwt-keys-'));
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(keysDir, '0001.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  return {
    trustDomain,
    ca: { certPem: ca.caPem, keyPem: ca.exportPrivateKeyPem() },
    keysDir,
    dispose: () => rmSync(keysDir, { recursive: true, force: true }),
  };
}

export interface Replica {
  name: string;
  running: RunningAuthority;
  url: string;
  port: number;
  logs: LogSink;
  stop(): Promise<void>;
}

export async function startReplica(
  name: string,
  secrets: FleetSecrets,
  redisUrl: string,
  config: Record<string, unknown>,
  port = 0,
  options: { clock?: Clock } = {},
): Promise<Replica> {
  const parsed = parseConfig(
    authoritySchema,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      hostnames: ['127.0.0.1', 'localhost'],
      trustDomain: secrets.trustDomain,
      signing: { keysDir: secrets.keysDir },
      redis: redisUrl,
      ...config,
    }),
    {},
  );
  const logs = new LogSink();
  const logger = createLogger({ level: 'debug', destination: logs }).child({ replica: name });
  // A replica on a skewed clock still gets a listener certificate valid by the real clock
  // (the test's TLS client checks it against real time), as an operator's `tls` pair would be.
  const tls = options.clock
    ? CertificateAuthority.load(secrets.ca.certPem, secrets.ca.keyPem, secrets.trustDomain).serverCertificate(['localhost'], ['127.0.0.1'], 86_400_000)
    : undefined;
  const running = await createAuthority({
    config: parsed,
    env: {},
    ca: secrets.ca,
    ...(options.clock ? { clock: options.clock, tls: { certPem: tls!.certPem, keyPem: tls!.keyPem } } : {}),
    adminToken: ADMIN_TOKEN,
    secret: () => () => '',
    files: new Map(),
    logger,
  });
  const addr: AddressInfo = await running.server.listen(parsed.listen.host, parsed.listen.port);
  let stopped = false;
  return {
    name,
    running,
    url: `https://127.0.0.1:${addr.port}`,
    port: addr.port,
    logs,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await running.close();
    },
  };
}

// ------------------------------------------------------------------ a raw API client

export interface ApiAnswer<T = unknown> {
  status: number;
  body: T;
  /** The answer's headers (api() sets them). */
  headers?: Record<string, string | string[] | undefined>;
}

export interface ClientIdentity {
  keyPem: string;
  certPem?: string;
}

/** One JSON call to an authority; mTLS when `identity` has a certificate, admin bearer when `admin`. */
export function api<T = Record<string, unknown>>(
  baseUrl: string,
  caPem: string,
  method: string,
  path: string,
  opts: { body?: unknown; identity?: ClientIdentity; admin?: boolean } = {},
): Promise<ApiAnswer<T>> {
  const data = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, baseUrl),
      {
        method,
        ca: caPem,
        agent: false,
        ...(opts.identity?.certPem ? { cert: opts.identity.certPem, key: opts.identity.keyPem } : {}),
        headers: {
          accept: 'application/json',
          ...(opts.admin ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {}),
          ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            // leave as text
          }
          resolve({ status: res.statusCode ?? 0, body: body as T, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** Bootstrap a fresh EC key at `baseUrl` with a join token; the identity (cert set) on 200. */
export async function bootstrap(baseUrl: string, caPem: string, joinToken: string): Promise<ApiAnswer<{ identity?: string; certificate?: string }> & { client: ClientIdentity }> {
  const key = createIdentityKey();
  const answer = await api<{ identity?: string; certificate?: string }>(baseUrl, caPem, 'POST', '/v1/bootstrap', {
    body: { joinToken, csr: createCsr(key, 'leash-test') },
  });
  return { ...answer, client: { keyPem: key.privateKeyPem, certPem: answer.status === 200 ? answer.body.certificate : undefined } };
}
